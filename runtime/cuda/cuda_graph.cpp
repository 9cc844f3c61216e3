// CudaGraphStep: stream capture in thread-local mode, so other threads' CUDA calls are unaffected; a capture
// that throws midway ends the capture before the error propagates, leaving the stream usable.
#include "runtime/cuda/cuda_graph.h"

#include "kernels/cuda/check.h"
#include "kernels/error.h"

namespace moerig::runtime::cuda {

void CudaGraphStep::capture(cudaStream_t stream, const std::function<void()>& enqueue) {
    reset();
    MOERIG_CHECK(stream != nullptr, ConfigError, "CUDA graph: capture needs a created stream, not the legacy default");
    MOERIG_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    try {
        enqueue();
    } catch (...) {
        cudaGraph_t partial = nullptr;
        cudaStreamEndCapture(stream, &partial);
        if (partial != nullptr) cudaGraphDestroy(partial);
        (void)cudaGetLastError();
        throw;
    }
    MOERIG_CUDA_CHECK(cudaStreamEndCapture(stream, &graph_));
    MOERIG_CUDA_CHECK(cudaGraphInstantiate(&exec_, graph_, 0));
}

void CudaGraphStep::launch(cudaStream_t stream) const {
    MOERIG_CHECK(exec_ != nullptr, Error, "CUDA graph: launch before capture");
    MOERIG_CUDA_CHECK(cudaGraphLaunch(exec_, stream));
}

void CudaGraphStep::reset() {
    if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
    if (graph_ != nullptr) cudaGraphDestroy(graph_);
    exec_ = nullptr;
    graph_ = nullptr;
}

}  // namespace moerig::runtime::cuda
