// Matrix products of a (possibly quantised) weight matrix with float activations: y = W x per token.
// matmul_ref is the exact float reference; matmul is the fast path (quantised activations as llama.cpp,
// SIMD dot products, threads, several tokens per pass over a weight row for prefill).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/dtype.h"
#include "kernels/threadpool.h"

namespace moerig::kernels {

/// A 2-D weight matrix in GGUF layout (ne[0] = cols contiguous per row). Views never own data; slices of
/// 3-D expert tensors and row ranges are views into the same bytes (zero copy).
struct WeightView {
    DType type = DType::F32;
    int64_t rows = 0;             // output features (ne[1])
    int64_t cols = 0;             // input features (ne[0]); a multiple of the type's block size
    const void* data = nullptr;   // first byte of row 0
    size_t row_stride_bytes = 0;  // bytes between consecutive rows (>= row_bytes(type, cols))

    /// A densely packed matrix (row stride = row_bytes(type, cols)).
    static WeightView dense(DType type, int64_t rows, int64_t cols, const void* data);
    /// Expert `expert_idx` of a merged 3-D tensor [num_experts][rows][cols] (GGUF ffn_*_exps, ne[2] = experts).
    static WeightView expert(DType type, int64_t rows, int64_t cols, const void* data, int64_t expert_idx);

    const void* row(int64_t row_idx) const {
        return static_cast<const char*>(data) + static_cast<size_t>(row_idx) * row_stride_bytes;
    }
    /// Rows [row_begin, row_end) as a view.
    WeightView slice_rows(int64_t row_begin, int64_t row_end) const;
};

/// Activations and outputs of a product, with optional gathering: token t reads x row x_rows[t] and writes
/// y row y_rows[t] (nullptr = identity). Lets the MoE engine run an expert over its routed tokens in place.
struct TokenRows {
    const float* x = nullptr;  // [*][x_stride], first cols floats of a row are used
    int64_t x_stride = 0;      // floats between x rows (>= cols)
    const int32_t* x_rows = nullptr;
    float* y = nullptr;    // [*][y_stride], first rows floats of a row are written
    int64_t y_stride = 0;  // floats between y rows (>= w.rows)
    const int32_t* y_rows = nullptr;
    int64_t num_tokens = 0;
};

/// Reference: y[t*rows + r] = sum_c W[r, c] * x[t*cols + c], from dequantised weights, double accumulation.
/// Activations are used as given (no rounding): the exact float product.
void matmul_ref(const WeightView& w, const float* x, int64_t num_tokens, float* y);
void matmul_ref(const WeightView& w, const TokenRows& io);

/// Reference of matmul's (and llama.cpp's ggml-cpu) semantic: each activation row is first converted to
/// activation_type(w.type) and back (F16/BF16 weights: x rounded to F16/BF16, round to nearest even, as
/// ggml's vec_dot_type; Q8_0 / Q8_K for quantised weights; F32 weights: unchanged), then the product with the
/// dequantised weights is accumulated in double. matmul equals this up to the order of float additions.
void matmul_ref_act(const WeightView& w, const float* x, int64_t num_tokens, float* y);
void matmul_ref_act(const WeightView& w, const TokenRows& io);

/// Fast product with matmul_ref_act's semantic. Activations are converted to activation_type(w.type) as
/// llama.cpp does (Q8_0 / Q8_K for quantised weights, F16 / BF16 for F16 / BF16 weights, dot products summed
/// in float), so results differ from the exact matmul_ref by that rounding (~1e-4 NMSE for Q8_K, ~1e-6 for
/// BF16, ~1e-8 for F16, none for F32).
/// Rows (or, for matrices with few rows, tokens) are split over the pool. Called from inside a task of the same
/// pool (e.g. one expert per task), it runs on that thread alone. Scratch buffers are thread-local: no allocation
/// per call once warm.
void matmul(const WeightView& w, const float* x, int64_t num_tokens, float* y, ThreadPool& pool);
void matmul(const WeightView& w, const TokenRows& io, ThreadPool& pool);

/// True when matmul supports the weight type (all types of can_dequantize).
bool can_matmul(DType type);

/// Dot product of one row of `type` (n values) with already quantised activations (of activation_type(type)).
/// The building block of matmul, exposed for tests and for callers that quantise activations once.
float vec_dot(DType type, const void* w_row, const void* x_quant, int64_t n);
/// Portable scalar version of vec_dot (same arithmetic, no SIMD), for checking the SIMD paths.
float vec_dot_scalar(DType type, const void* w_row, const void* x_quant, int64_t n);

}  // namespace moerig::kernels
