// Internal to kernels/: register-blocked Q6_K weight x Q8_K activation product for prefill. Activations are the
// Q8_K rows matmul already makes (no repacking); results equal vec_dot's up to the order of float additions.
#pragma once

#include <cstdint>

#include "kernels/matmul.h"

namespace moerig::kernels {

/// True when this build has the integer micro-kernel (AVX-512 with VNNI); otherwise matmul keeps its per-row dot
/// products for Q6_K weights.
bool gemm_q6_k_supported();

/// y[t][r] = dot(W row r, x[t]) for rows [row_begin, row_end) of the Q6_K matrix w and tokens [0, num_tokens):
/// acts[t] is a row of w.cols / 256 BlockQ8_K, y[t] the output row of token t (written at index r only).
/// Runs on the calling thread; scratch is thread-local.
void gemm_q6_k(const WeightView& w, int64_t row_begin, int64_t row_end, const void* const* acts, float* const* y,
               int64_t num_tokens);

}  // namespace moerig::kernels
