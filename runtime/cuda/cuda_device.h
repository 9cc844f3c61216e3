// A real GPU (or a slice of one) as a runtime card: cudaMalloc charged to the card's budget, its own stream
// for copies and kernels, and a budget checked against the memory the driver reports free. Several
// CudaDevices on one GPU are the "virtual cards" that let one big GPU stand in for a rig of small ones.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <vector>

#include "runtime/device.h"

namespace moerig::runtime::cuda {

/// Free and total bytes of a GPU as cudaMemGetInfo reports them.
struct GpuMemory {
    size_t free_bytes = 0;
    size_t total_bytes = 0;
};
GpuMemory gpu_memory(int gpu_idx);

class CudaDevice final : public Device {
  public:
    /// Card device_idx on GPU gpu_idx with budget_bytes (0: all memory free now less kDefaultReserve).
    /// Throws OutOfMemoryError if the budget exceeds the GPU's free memory, CudaError if the GPU is absent.
    CudaDevice(int gpu_idx, size_t budget_bytes, std::string name = {}, int device_idx = 0);
    ~CudaDevice() override;

    void copy_to_device(void* dst, const void* src, size_t num_bytes) override;
    void copy_to_host(void* dst, const void* src, size_t num_bytes) override;
    void copy_on_device(void* dst, const void* src, size_t num_bytes) override;
    void copy_to_device_async(void* dst, const void* src, size_t num_bytes) override;
    void copy_to_host_async(void* dst, const void* src, size_t num_bytes) override;
    void synchronize() override;
    void* native_stream() override { return stream_; }

    int gpu_idx() const { return gpu_idx_; }
    cudaStream_t stream() const { return stream_; }
    /// Makes this card's GPU current on the calling thread (every member does this itself).
    void make_current() const;

    /// Memory the CUDA context and cuBLAS workspaces need beyond the budget.
    static constexpr size_t kDefaultReserve = size_t{512} << 20;

  protected:
    void* raw_alloc(size_t num_bytes) override;
    void raw_free(void* data, size_t num_bytes) override;

  private:
    CudaDevice(int gpu_idx, const DeviceProps& props, size_t budget_bytes);

    int gpu_idx_;
    cudaStream_t stream_ = nullptr;
};

/// num_cards virtual cards on GPU gpu_idx, each with its own stream and budget_bytes of budget ("card<i>
/// (virtual on GPU n)"). Throws OutOfMemoryError when num_cards * budget_bytes exceeds the free memory.
std::vector<std::unique_ptr<CudaDevice>> make_virtual_cards(int gpu_idx, int num_cards, size_t budget_bytes);

}  // namespace moerig::runtime::cuda
