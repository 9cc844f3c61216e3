// Rotary position embeddings exactly as ggml's rope computes them: normal (adjacent pairs) and NeoX
// (halves) modes, freq_base/freq_scale, per-dimension frequency factors, and YaRN ramp + mscale.
#pragma once

#include <cstdint>

namespace moerig::kernels {

/// GGUF/llama.cpp rope settings. Defaults are plain RoPE with base 10000.
struct RopeParams {
    int64_t n_dims = 0;  // rotated dimensions per head (even, <= head size); the rest is untouched
    bool neox = false;   // NeoX pairs (i, i + n_dims/2) instead of (2i, 2i + 1)
    float freq_base = 10000.0f;
    float freq_scale = 1.0f;   // 1 / linear or YaRN scaling factor
    float ext_factor = 0.0f;   // YaRN extrapolation mix (0 = off; llama.cpp sets 1 for YaRN)
    float attn_factor = 1.0f;  // mscale multiplied into cos/sin
    float beta_fast = 32.0f;
    float beta_slow = 1.0f;
    int64_t n_ctx_orig = 0;               // original training context (YaRN correction dims)
    const float* freq_factors = nullptr;  // optional [n_dims / 2] divisors of theta (rope_freqs tensor)
};

/// YaRN correction range [low, high] in dimension-pair units, as ggml_rope_yarn_corr_dims.
void rope_yarn_corr_dims(const RopeParams& p, float dims[2]);

/// cos/sin table for one position: cos_sin[2i] = cos(theta_i) * mscale, cos_sin[2i+1] = sin(theta_i) * mscale,
/// i < n_dims / 2, computed with ggml's float recurrence theta_i = pos * base^(-2i/n_dims).
void rope_cache(const RopeParams& p, float position, float* cos_sin);

/// Rotates the first n_dims values of each head in place: x + t*token_stride + h*head_stride for
/// t < num_tokens, h < num_heads, at position positions[t].
void rope(const RopeParams& p, float* x, int64_t num_tokens, int64_t num_heads, int64_t token_stride,
          int64_t head_stride, const int32_t* positions);

}  // namespace moerig::kernels
