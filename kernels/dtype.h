// The tensor element types moerig knows: ggml's type ids, their quantisation block sizes and names.
// Ground truth for byte accounting (planner) and for kernels. Sizes follow ggml (shared/REFERENCE.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace moerig {

/// ggml/GGUF tensor type ids. Gaps are ids ggml retired; they are rejected as unknown.
enum class DType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
};

/// Block layout of one type: block_elems values are stored in block_bytes bytes.
struct DTypeTraits {
    DType type;
    std::string_view name;  // ggml's spelling, e.g. "Q4_K"
    uint32_t block_elems;
    uint32_t block_bytes;
    bool quantized;
};

/// Traits of a known type id, or nullopt for an id ggml does not define (or retired).
std::optional<DTypeTraits> dtype_traits(uint32_t id);
/// Traits of a known type (always succeeds for enumerators).
const DTypeTraits& dtype_traits(DType type);
/// Parses a name such as "q4_k" or "BF16" (case-insensitive); nullopt if unknown.
std::optional<DType> dtype_from_name(std::string_view name);
std::string_view dtype_name(DType type);

/// Bytes used by num_elems values of type; num_elems must be a multiple of the block size.
uint64_t dtype_bytes(DType type, uint64_t num_elems);
/// Bits per weight, e.g. 4.5 for Q4_K.
double dtype_bits_per_weight(DType type);

}  // namespace moerig
