// Internal to kernels/: register-blocked Q8_0 weight x Q8_0 activation product for prefill (several tokens per
// weight row). matmul quantises activations exactly as for its per-row dot products, repacks them once with
// gemm_q8_0_pack, and hands tiles of rows and tokens to gemm_q8_0; results equal vec_dot's up to the order of
// float additions (the integer block sums are the same exact integers).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/matmul.h"

namespace moerig::kernels {

/// True when this build has the integer micro-kernel (AVX-512 with VNNI); otherwise matmul keeps its per-row dot
/// products for Q8_0 weights.
bool gemm_q8_0_supported();

/// Bytes of one activation row of `cols` values repacked for gemm_q8_0 (a multiple of 64).
size_t gemm_q8_0_packed_bytes(int64_t cols);

/// Repacks one row of `cols` Q8_0 activations (BlockQ8_0[cols / 32]) into `dst` (gemm_q8_0_packed_bytes(cols)
/// bytes, 64-byte aligned): per pair of blocks, the 64 quants offset by 128 (unsigned) and 16 float scales.
void gemm_q8_0_pack(const void* x_q8_0, int64_t cols, void* dst);

/// y[t][r] = dot(W row r, x[t]) for rows [row_begin, row_end) of the Q8_0 matrix w and tokens [0, num_tokens):
/// acts[t] is a row packed by gemm_q8_0_pack, y[t] the output row of token t (written at index r only).
/// Runs on the calling thread; scratch is thread-local.
void gemm_q8_0(const WeightView& w, int64_t row_begin, int64_t row_end, const void* const* acts, float* const* y,
               int64_t num_tokens);

}  // namespace moerig::kernels
