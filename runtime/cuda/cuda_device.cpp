// CudaDevice: stream-ordered copies and cudaMalloc behind the budgeted Device interface.
#include "runtime/cuda/cuda_device.h"

#include "kernels/cuda/check.h"
#include "kernels/error.h"

namespace moerig::runtime::cuda {

GpuMemory gpu_memory(int gpu_idx) {
    MOERIG_CUDA_CHECK(cudaSetDevice(gpu_idx));
    GpuMemory m;
    MOERIG_CUDA_CHECK(cudaMemGetInfo(&m.free_bytes, &m.total_bytes));
    return m;
}

namespace {

DeviceProps make_props(int gpu_idx, std::string name, int device_idx) {
    const int count = moerig::cuda::device_count();
    MOERIG_CHECK(gpu_idx >= 0 && gpu_idx < count, CudaError, "CUDA GPU {} requested but this machine has {} GPU(s)",
                 gpu_idx, count);
    cudaDeviceProp prop{};
    MOERIG_CUDA_CHECK(cudaGetDeviceProperties(&prop, gpu_idx));
    DeviceProps p;
    p.name = name.empty() ? fmt::format("card{} ({}, GPU {})", device_idx, prop.name, gpu_idx) : std::move(name);
    p.device_idx = device_idx;
    p.host_accessible = false;
    p.async_copies = true;
    int mem_clock_khz = 0, bus_width = 0;
    if (cudaDeviceGetAttribute(&mem_clock_khz, cudaDevAttrMemoryClockRate, gpu_idx) == cudaSuccess &&
        cudaDeviceGetAttribute(&bus_width, cudaDevAttrGlobalMemoryBusWidth, gpu_idx) == cudaSuccess) {
        p.mem_bandwidth_gbs = 2.0 * mem_clock_khz * 1e3 * (bus_width / 8.0) / 1e9;  // DDR: two transfers a clock
    } else {
        (void)cudaGetLastError();
    }
    return p;
}

size_t checked_budget(int gpu_idx, size_t budget_bytes, const std::string& name) {
    const GpuMemory m = gpu_memory(gpu_idx);
    if (budget_bytes == 0) {
        MOERIG_CHECK(m.free_bytes > CudaDevice::kDefaultReserve, OutOfMemoryError,
                     "card '{}': GPU {} has only {} free, less than the {} reserve", name, gpu_idx,
                     format_bytes(m.free_bytes), format_bytes(CudaDevice::kDefaultReserve));
        return m.free_bytes - CudaDevice::kDefaultReserve;
    }
    MOERIG_CHECK(budget_bytes <= m.free_bytes, OutOfMemoryError,
                 "card '{}': budget {} exceeds the {} free on GPU {} (of {})", name, format_bytes(budget_bytes),
                 format_bytes(m.free_bytes), gpu_idx, format_bytes(m.total_bytes));
    return budget_bytes;
}

}  // namespace

CudaDevice::CudaDevice(int gpu_idx, size_t budget_bytes, std::string name, int device_idx)
    : CudaDevice(gpu_idx, make_props(gpu_idx, std::move(name), device_idx), budget_bytes) {}

CudaDevice::CudaDevice(int gpu_idx, const DeviceProps& props, size_t budget_bytes)
    : Device(props, checked_budget(gpu_idx, budget_bytes, props.name)), gpu_idx_(gpu_idx) {
    MOERIG_CUDA_CHECK(cudaSetDevice(gpu_idx_));
    MOERIG_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
}

CudaDevice::~CudaDevice() {
    if (stream_ != nullptr) {
        cudaSetDevice(gpu_idx_);
        cudaStreamSynchronize(stream_);
        cudaStreamDestroy(stream_);
    }
}

void CudaDevice::make_current() const {
    MOERIG_CUDA_CHECK(cudaSetDevice(gpu_idx_));
}

void CudaDevice::copy_to_device(void* dst, const void* src, size_t num_bytes) {
    copy_to_device_async(dst, src, num_bytes);
    synchronize();
}

void CudaDevice::copy_to_host(void* dst, const void* src, size_t num_bytes) {
    copy_to_host_async(dst, src, num_bytes);
    synchronize();
}

void CudaDevice::copy_on_device(void* dst, const void* src, size_t num_bytes) {
    if (num_bytes == 0) return;
    make_current();
    MOERIG_CUDA_CHECK(cudaMemcpyAsync(dst, src, num_bytes, cudaMemcpyDeviceToDevice, stream_));
}

void CudaDevice::copy_to_device_async(void* dst, const void* src, size_t num_bytes) {
    if (num_bytes == 0) return;
    make_current();
    MOERIG_CUDA_CHECK(cudaMemcpyAsync(dst, src, num_bytes, cudaMemcpyHostToDevice, stream_));
}

void CudaDevice::copy_to_host_async(void* dst, const void* src, size_t num_bytes) {
    if (num_bytes == 0) return;
    make_current();
    MOERIG_CUDA_CHECK(cudaMemcpyAsync(dst, src, num_bytes, cudaMemcpyDeviceToHost, stream_));
}

void CudaDevice::synchronize() {
    make_current();
    MOERIG_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void* CudaDevice::raw_alloc(size_t num_bytes) {
    make_current();
    void* p = nullptr;
    if (cudaMalloc(&p, num_bytes) != cudaSuccess) {
        (void)cudaGetLastError();  // out of memory is reported by Device::alloc as OutOfMemoryError
        return nullptr;
    }
    return p;
}

void CudaDevice::raw_free(void* data, size_t) {
    make_current();
    // Work queued on the stream may still read the buffer.
    cudaStreamSynchronize(stream_);
    cudaFree(data);
}

std::vector<std::unique_ptr<CudaDevice>> make_virtual_cards(int gpu_idx, int num_cards, size_t budget_bytes) {
    MOERIG_CHECK(num_cards >= 1, ConfigError, "virtual cards: need at least one card, got {}", num_cards);
    const GpuMemory m = gpu_memory(gpu_idx);
    const size_t total = budget_bytes * static_cast<size_t>(num_cards);
    MOERIG_CHECK(total <= m.free_bytes, OutOfMemoryError,
                 "virtual cards: {} cards of {} need {} but GPU {} has {} free", num_cards, format_bytes(budget_bytes),
                 format_bytes(total), gpu_idx, format_bytes(m.free_bytes));
    cudaDeviceProp prop{};
    MOERIG_CUDA_CHECK(cudaGetDeviceProperties(&prop, gpu_idx));
    std::vector<std::unique_ptr<CudaDevice>> cards;
    for (int i = 0; i < num_cards; ++i) {
        cards.push_back(std::make_unique<CudaDevice>(
            gpu_idx, budget_bytes, fmt::format("card{} (virtual on GPU {}, {})", i, gpu_idx, prop.name), i));
    }
    return cards;
}

}  // namespace moerig::runtime::cuda
