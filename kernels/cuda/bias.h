// Per-row broadcasts the GPU engine needs around its matrix products: bias vectors added to every row,
// per-expert biases picked by each slot's expert id (gpt-oss), and Qwen2-MoE's sigmoid gate of the shared
// expert. Twins of the loops in runtime/forward.cpp, forward_attention.cpp and moe.cpp.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace moerig::kernels::cuda {

/// y[r*n + c] += bias[c] for r < num_rows, c < n (device pointers).
void add_bias_rows(float* y, const float* bias, int64_t num_rows, int64_t n, cudaStream_t stream);

/// y[s*y_stride + c] += bias[ids[s]*n + c] for s < num_slots, c < n; slots with ids[s] < 0 are left alone.
void add_indexed_bias(float* y, int64_t y_stride, const float* bias, const int32_t* ids, int64_t num_slots, int64_t n,
                      cudaStream_t stream);

/// y[r*n + c] *= silu(g[r]) / g[r] (= sigmoid(g[r]), computed as llama.cpp does) for r < num_rows.
void scale_rows_by_sigmoid_gate(float* y, const float* g, int64_t num_rows, int64_t n, cudaStream_t stream);

}  // namespace moerig::kernels::cuda
