// Host side of the CUDA checks (compiled as C++20 with fmt).
#include "kernels/cuda/check.h"

#include "kernels/error.h"

namespace moerig::cuda {

void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
    throw CudaError(fmt::format("CUDA error {} ({}) in {} at {}:{}", cudaGetErrorName(err), cudaGetErrorString(err),
                                expr, file, line),
                    file, line);
}

}  // namespace moerig::cuda
