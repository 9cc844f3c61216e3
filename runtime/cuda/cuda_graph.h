// A decode step captured once as a CUDA graph and replayed: one launch instead of hundreds per token, which
// matters once a step is a few milliseconds. Valid while the step's shapes and buffer addresses stay fixed
// (decode at a fixed batch size with device-side positions); re-capture when they change.
#pragma once

#include <cuda_runtime.h>

#include <functional>

namespace moerig::runtime::cuda {

class CudaGraphStep {
  public:
    CudaGraphStep() = default;
    ~CudaGraphStep() { reset(); }
    CudaGraphStep(const CudaGraphStep&) = delete;
    CudaGraphStep& operator=(const CudaGraphStep&) = delete;

    /// Records everything `enqueue` issues on `stream` (nothing runs yet) and instantiates it, replacing any
    /// earlier capture. enqueue must only enqueue work on stream: no synchronisation, no host reads.
    void capture(cudaStream_t stream, const std::function<void()>& enqueue);
    /// Runs the captured step on stream (asynchronously).
    void launch(cudaStream_t stream) const;
    bool captured() const { return exec_ != nullptr; }
    void reset();

  private:
    cudaGraph_t graph_ = nullptr;
    cudaGraphExec_t exec_ = nullptr;
};

}  // namespace moerig::runtime::cuda
