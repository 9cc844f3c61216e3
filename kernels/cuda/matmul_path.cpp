#include "kernels/cuda/matmul_path.h"

#include <cstdint>

#include "kernels/cuda/gemv_dp4a.h"

namespace moerig::kernels::cuda {

MatmulPath matmul_path(DType type, const void* w, const float* x, int64_t num_cols, int64_t num_vecs, bool dp4a) {
    if (num_vecs > kGemvMaxVecs) return MatmulPath::kGemm;
    if (dp4a && gemv_dp4a_supported(type) && reinterpret_cast<uintptr_t>(w) % gemv_dp4a_weight_alignment(type) == 0)
        return MatmulPath::kGemvDp4a;
    if (num_cols % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0) return MatmulPath::kGemv;
    return MatmulPath::kGemm;
}

}  // namespace moerig::kernels::cuda
