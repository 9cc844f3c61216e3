// moe_ffn: three expert-indexed GEMVs (gate and up share each token's input, down reads each slot's own
// activation), the SwiGLU between them, and the deterministic per-token combine.
#include "kernels/cuda/experts.h"

#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/permute.h"
#include "kernels/error.h"
#include "kernels/ops.h"

namespace moerig::kernels::cuda {

int64_t ExpertTensor::matrix_bytes() const {
    return static_cast<int64_t>(dtype_bytes(type, static_cast<uint64_t>(rows * cols)));
}

int64_t moe_ffn_scratch_elems(int64_t num_slots, int64_t ffn) {
    return 3 * num_slots * ffn;
}

void moe_ffn(const ExpertTensor& gate, const ExpertTensor& up, const ExpertTensor& down, ExpertActivation act,
             const float* x, int64_t num_tokens, const int32_t* expert_ids, const float* weights, int64_t k, float* out,
             bool accumulate, float* scratch, cudaStream_t stream) {
    const int64_t hidden = gate.cols;
    const int64_t ffn = gate.rows;
    MOERIG_CHECK(up.rows == ffn && up.cols == hidden && down.rows == hidden && down.cols == ffn, ConfigError,
                 "cuda::moe_ffn: expert shapes disagree: gate {}x{}, up {}x{}, down {}x{} (expected down {}x{})",
                 gate.rows, gate.cols, up.rows, up.cols, down.rows, down.cols, hidden, ffn);
    MOERIG_CHECK(k >= 1, ConfigError, "cuda::moe_ffn: k must be >= 1, got {}", k);
    if (num_tokens <= 0) return;
    const int64_t num_slots = num_tokens * k;
    float* g = scratch;
    float* u = g + num_slots * ffn;
    float* y = u + num_slots * ffn;
    gemv_indexed(gate.type, gate.data, gate.matrix_bytes(), ffn, hidden, expert_ids, num_slots, x, hidden, k, g, ffn,
                 stream);
    gemv_indexed(up.type, up.data, up.matrix_bytes(), ffn, hidden, expert_ids, num_slots, x, hidden, k, u, ffn, stream);
    if (act == ExpertActivation::kSwiglu) {
        swiglu(g, u, g, num_slots * ffn, stream);
    } else {
        swiglu_oai(g, u, g, num_slots * ffn, kSwigluOaiAlpha, kSwigluOaiLimit, stream);
    }
    gemv_indexed(down.type, down.data, down.matrix_bytes(), hidden, ffn, expert_ids, num_slots, g, ffn, 1, y, hidden,
                 stream);
    combine_rows(y, hidden, nullptr, weights, num_tokens, k, hidden, out, hidden, accumulate, stream);
}

}  // namespace moerig::kernels::cuda
