// Random but well-formed weight tensors generated on the GPU (benchmarks, and tests that need big inputs
// without a file): random quant bytes with sane fp16 scales, or uniform floats for F32/F16/BF16.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace moerig::kernels::cuda {

/// Fills dst with num_elems values of `type` (gemv_supported types), deterministic in seed. Block scales
/// are positive fp16 values in [2^-10, 2^-7) (MXFP4: E8M0 exponents 119..122), so every decoded weight is
/// finite; floats are uniform in [-0.05, 0.05].
void fill_random_weights(DType type, void* dst, int64_t num_elems, uint64_t seed, cudaStream_t stream);

}  // namespace moerig::kernels::cuda
