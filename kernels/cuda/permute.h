// Row permutations for the MoE dispatcher on the GPU: gather token rows into expert order, and the weighted
// return trip (deterministic combine through each token's slot list, or atomic scatter-add).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace moerig::kernels::cuda {

/// dst[i*dst_stride + c] = src[row_ids[i]*src_stride + c] for i < num_rows, c < dim (row_ids < 0: zeros).
void gather_rows(const float* src, int64_t src_stride, const int32_t* row_ids, int64_t num_rows, int64_t dim,
                 float* dst, int64_t dst_stride, cudaStream_t stream);

/// For each token t: dst[t] = (accumulate ? dst[t] : 0) + sum_j weights[t*k + j] * src[slot_ids[t*k + j]],
/// j = 0..k-1 in order (slots < 0 are skipped; slot_ids nullptr: slot t*k + j). Bitwise deterministic.
void combine_rows(const float* src, int64_t src_stride, const int32_t* slot_ids, const float* weights,
                  int64_t num_tokens, int64_t k, int64_t dim, float* dst, int64_t dst_stride, bool accumulate,
                  cudaStream_t stream);

/// dst[row_ids[i]] += weights[i] * src[i] for i < num_rows (weights may be nullptr: 1). Uses atomics, so the
/// summation order (and the last bits) may vary between runs; prefer combine_rows where tokens must match.
void scatter_add_rows(const float* src, int64_t src_stride, const int32_t* row_ids, const float* weights,
                      int64_t num_rows, int64_t dim, float* dst, int64_t dst_stride, cudaStream_t stream);

}  // namespace moerig::kernels::cuda
