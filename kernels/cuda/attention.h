// Causal GQA attention on the GPU (decode and prefill), twin of kernels::attention (attention.h): soft cap,
// sliding window, sinks, and separate K/V head sizes for absorbed MLA (K and V may share storage).
#pragma once

#include <cuda_runtime.h>

#include "kernels/attention.h"

namespace moerig::kernels::cuda {

/// Largest head_dim / v_head_dim supported (MLA absorbed: 512 latent + 64 rope = 576).
inline constexpr int kAttentionMaxHeadDim = 576;

/// As kernels::attention, with every pointer in p and io (q, k, v, out, positions, sinks) on the device.
/// One CTA per (query, head); its warps split the visible keys and merge their online-softmax states.
void attention(const AttentionParams& p, const AttentionIo& io, cudaStream_t stream);

}  // namespace moerig::kernels::cuda
