// Which kernel a device product runs on, chosen in one place for every caller (CudaSession, the GPU expert
// backends of virtual cards): the int8 GEMV (gemv_dp4a.h), the float GEMV (gemv.h), or cuBLAS on dequantised
// tiles (gemm.h).
#pragma once

#include <cstdint>

#include "kernels/dtype.h"

namespace moerig::kernels::cuda {

/// Products of at most this many vectors run on the GEMV kernels (weights decoded in registers); more on cuBLAS.
inline constexpr int64_t kGemvMaxVecs = 8;

enum class MatmulPath { kGemvDp4a, kGemv, kGemm };

/// The path for W (of `type`, at device address w) times num_vecs vectors x of num_cols values: the int8 GEMV when
/// dp4a is wanted and the type and w's alignment allow it, the float GEMV when x is 16-byte aligned and num_cols a
/// multiple of 4, else cuBLAS.
MatmulPath matmul_path(DType type, const void* w, const float* x, int64_t num_cols, int64_t num_vecs, bool dp4a);

}  // namespace moerig::kernels::cuda
