// Prefill GEMM: dequantise a tile of weight rows into scratch, then one SGEMM per tile writes those rows
// of every token's output. Row-major W[rows][cols] is column-major W^T, hence CUBLAS_OP_T.
#include "kernels/cuda/gemm.h"

#include <algorithm>

#include "kernels/cuda/check.h"
#include "kernels/cuda/dequantize.h"
#include "kernels/cuda/gemv.h"
#include "kernels/error.h"

namespace moerig::kernels::cuda {
namespace {

void check_cublas(cublasStatus_t status, const char* what) {
    MOERIG_CHECK(status == CUBLAS_STATUS_SUCCESS, CudaError, "cuBLAS {} failed with status {}", what,
                 static_cast<int>(status));
}

}  // namespace

int64_t gemm_scratch_elems(DType type, int64_t num_rows, int64_t num_cols) {
    if (type == DType::F32) return 0;
    return std::min(num_rows, kGemmTileRows) * num_cols;
}

void gemm(cublasHandle_t handle, DType type, const void* w, int64_t num_rows, int64_t num_cols, const float* x,
          int64_t num_tokens, float* y, float* scratch, cudaStream_t stream) {
    MOERIG_CHECK(num_rows > 0 && num_cols > 0 && num_rows < (1LL << 31) && num_cols < (1LL << 31), ConfigError,
                 "cuda::gemm: bad shape {}x{}", num_rows, num_cols);
    MOERIG_CHECK(gemv_supported(type), UnsupportedError, "cuda::gemm: weight type {} has no CUDA decoder",
                 dtype_name(type));
    if (num_tokens <= 0) return;
    MOERIG_CHECK(type == DType::F32 || scratch != nullptr, ConfigError, "cuda::gemm: {} weights need scratch",
                 dtype_name(type));
    check_cublas(cublasSetStream(handle, stream), "cublasSetStream");
    const size_t row_bytes = dtype_bytes(type, static_cast<uint64_t>(num_cols));
    const float alpha = 1.0f, beta = 0.0f;
    const int64_t tile_rows = type == DType::F32 ? num_rows : std::min(num_rows, kGemmTileRows);
    for (int64_t row0 = 0; row0 < num_rows; row0 += tile_rows) {
        const int64_t rows = std::min(tile_rows, num_rows - row0);
        const void* tile_src = static_cast<const char*>(w) + static_cast<size_t>(row0) * row_bytes;
        const float* a = static_cast<const float*>(tile_src);
        if (type != DType::F32) {
            dequantize(type, tile_src, rows * num_cols, scratch, stream);
            a = scratch;
        }
        // Column-major view: Y^T[rows x tokens] (ld num_rows) = (A^T)^T[rows x cols] * X^T[cols x tokens].
        check_cublas(cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(rows), static_cast<int>(num_tokens),
                                 static_cast<int>(num_cols), &alpha, a, static_cast<int>(num_cols), x,
                                 static_cast<int>(num_cols), &beta, y + row0, static_cast<int>(num_rows)),
                     "cublasSgemm");
    }
}

}  // namespace moerig::kernels::cuda
