// CpuDevice: aligned host allocations and memcpy copies.
#include "runtime/cpu_device.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace moerig::runtime {

CpuDevice::CpuDevice(std::string name, size_t budget_bytes, int device_idx, double mem_bandwidth_gbs)
    : Device(DeviceProps{.name = std::move(name),
                         .device_idx = device_idx,
                         .host_accessible = true,
                         .async_copies = false,
                         .mem_bandwidth_gbs = mem_bandwidth_gbs},
             budget_bytes) {}

void CpuDevice::copy_to_device(void* dst, const void* src, size_t num_bytes) {
    if (num_bytes != 0) std::memcpy(dst, src, num_bytes);
}
void CpuDevice::copy_to_host(void* dst, const void* src, size_t num_bytes) {
    if (num_bytes != 0) std::memcpy(dst, src, num_bytes);
}
void CpuDevice::copy_on_device(void* dst, const void* src, size_t num_bytes) {
    if (num_bytes != 0) std::memmove(dst, src, num_bytes);
}

void* CpuDevice::raw_alloc(size_t num_bytes) {
    return ::operator new (num_bytes, std::align_val_t{kAlignment}, std::nothrow);
}

void CpuDevice::raw_free(void* data, size_t) {
    ::operator delete (data, std::align_val_t{kAlignment});
}

}  // namespace moerig::runtime
