// Conversions between float and ggml's storage types: fp16/bf16 scalars, and whole rows of any supported
// quantised type (dequantize_row / quantize_row), bit-compatible with GGUF data and ggml's reference quantizers.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/dtype.h"
#include "kernels/quant_blocks.h"

namespace moerig::kernels {

/// IEEE binary16 bits -> float (exact, handles subnormals, Inf, NaN).
float fp16_to_fp32(uint16_t h);
/// float -> binary16 bits, round to nearest even, overflow to Inf (as F16C / ggml).
uint16_t fp32_to_fp16(float f);
/// bfloat16 bits -> float (exact).
inline float bf16_to_fp32(uint16_t h) {
    uint32_t bits = static_cast<uint32_t>(h) << 16;
    float f;
    __builtin_memcpy(&f, &bits, sizeof f);
    return f;
}
/// float -> bfloat16 bits, round to nearest even; NaN stays a quiet NaN (as ggml_fp32_to_bf16).
uint16_t fp32_to_bf16(float f);

/// E8M0 exponent byte -> 2^(e - 128), i.e. half the MXFP4 scale (ggml's E8M0_TO_FP32_HALF).
float e8m0_to_fp32_half(uint8_t e);

/// True if dequantize_row supports the type: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_K,
/// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, MXFP4.
bool can_dequantize(DType type);
/// True if quantize_row supports the type (the same set as can_dequantize).
bool can_quantize(DType type);

/// Decodes n values (a multiple of the type's block size) of type from src into dst.
/// Throws UnsupportedError for other types, ConfigError if n is not a whole number of blocks.
void dequantize_row(DType type, const void* src, float* dst, int64_t n);
/// Encodes n values into dst (dtype_bytes(type, n) bytes) with ggml's reference quantizer for the type.
void quantize_row(DType type, const float* src, void* dst, int64_t n);

/// Bytes of one row of n values.
size_t row_bytes(DType type, int64_t n);

/// The type llama.cpp quantises activations to for a dot product with weights of type `weight`
/// (ggml-cpu's vec_dot_type: Q8_0 for the 32-wide types and MXFP4, Q8_K for K-quants, F16 / BF16 for F16 /
/// BF16 weights, F32 for F32). llama.cpp uses Q8_1 for Q4_1/Q5_1; its quants equal Q8_0's, so Q8_0 is used.
DType activation_type(DType weight);

}  // namespace moerig::kernels
