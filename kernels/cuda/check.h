// CUDA error checks usable from .cu and .cpp files alike: failures raise moerig::CudaError with file,
// line and the failed call. (No fmt here: device code is compiled as C++17 by nvcc.)
#pragma once

#include <cuda_runtime.h>

namespace moerig::cuda {

/// Throws CudaError describing err for the call `expr` at file:line.
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line);

/// Number of usable CUDA devices; 0 when there is no driver or no GPU (never throws).
int device_count();

}  // namespace moerig::cuda

#define MOERIG_CUDA_CHECK(call)                                                                     \
    do {                                                                                            \
        cudaError_t err_ = (call);                                                                  \
        if (err_ != cudaSuccess) ::moerig::cuda::throw_cuda_error(err_, #call, __FILE__, __LINE__); \
    } while (0)
