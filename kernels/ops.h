// Element-wise and row-wise float ops of the transformer block, in the exact forms llama.cpp/ggml use:
// normalisations, activations (SiLU, SwiGLU, gpt-oss SwiGLU, GELU), softmax, and sampling helpers.
#pragma once

#include <cstdint>

namespace moerig::kernels {

/// y = x / sqrt(mean(x^2) + eps) * weight (weight may be nullptr: no scaling); y may alias x.
void rms_norm(const float* x, const float* weight, float* y, int64_t n, float eps);
/// rms_norm over num_rows rows of n (row stride n).
void rms_norm_rows(const float* x, const float* weight, float* y, int64_t num_rows, int64_t n, float eps);
/// y = (x - mean) / sqrt(var + eps) * weight + bias (weight/bias may be nullptr); y may alias x.
void layer_norm(const float* x, const float* weight, const float* bias, float* y, int64_t n, float eps);

/// y = a + b, y = a * b, y = a * s (y may alias a or b).
void add(const float* a, const float* b, float* y, int64_t n);
void mul(const float* a, const float* b, float* y, int64_t n);
void scale(const float* a, float s, float* y, int64_t n);
/// y += s * x.
void axpy(float s, const float* x, float* y, int64_t n);

/// silu(x) = x / (1 + exp(-x)).
void silu(const float* x, float* y, int64_t n);
/// llama.cpp SwiGLU: y = silu(gate) * up.
void swiglu(const float* gate, const float* up, float* y, int64_t n);
/// gpt-oss SwiGLU (ggml swiglu_oai): g = min(gate, limit), u = clamp(up, -limit, limit),
/// y = g * sigmoid(alpha * g) * (u + 1). gpt-oss uses alpha 1.702, limit 7.
void swiglu_oai(const float* gate, const float* up, float* y, int64_t n, float alpha, float limit);
/// gpt-oss's alpha and limit (llama.cpp build_moe_ffn, LLM_FFN_SWIGLU_OAI_MOE).
inline constexpr float kSwigluOaiAlpha = 1.702f;
inline constexpr float kSwigluOaiLimit = 7.0f;
/// GELU, tanh approximation as ggml: 0.5 x (1 + tanh(sqrt(2/pi) x (1 + 0.044715 x^2))).
void gelu(const float* x, float* y, int64_t n);

/// In-place numerically stable softmax of n values (max subtracted first). -inf entries get 0.
void softmax(float* x, int64_t n);
/// y = 1 / (1 + exp(-x)).
void sigmoid(const float* x, float* y, int64_t n);

/// Index of the largest value (the first one on ties; NaN never wins).
int64_t argmax(const float* x, int64_t n);
/// Indices of the k largest values, largest first (ties: lower index first). idx must hold k entries.
void top_k(const float* x, int64_t n, int64_t k, int32_t* idx);

}  // namespace moerig::kernels
