// Internal to kernels/: per-type dot products of one weight row with one quantised activation row.
// matmul.cpp picks a function once per call and runs it over rows and tokens.
#pragma once

#include <cstdint>

#include "kernels/dtype.h"

namespace moerig::kernels {

/// w_row: n values of the weight type; x: n values of activation_type(weight type).
using VecDotFn = float (*)(const void* w_row, const void* x, int64_t n);

/// The fastest dot product for the weight type on this build, or the portable scalar one.
/// Returns nullptr for types matmul does not support.
VecDotFn vec_dot_fn(DType weight, bool scalar_only = false);

}  // namespace moerig::kernels
