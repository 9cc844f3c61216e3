// The virtual card: host memory behind a Device with its own budget (the VRAM of the card it stands
// for, taken from the rig file). Copies are memcpy and complete before returning.
#pragma once

#include <string>

#include "runtime/device.h"

namespace moerig::runtime {

class CpuDevice final : public Device {
  public:
    /// A virtual card named name with budget_bytes of "VRAM"; mem_bandwidth_gbs is informational.
    CpuDevice(std::string name, size_t budget_bytes, int device_idx = 0, double mem_bandwidth_gbs = 0);

    void copy_to_device(void* dst, const void* src, size_t num_bytes) override;
    void copy_to_host(void* dst, const void* src, size_t num_bytes) override;
    void copy_on_device(void* dst, const void* src, size_t num_bytes) override;

    /// Allocations are aligned to this many bytes (SIMD loads, cache lines).
    static constexpr size_t kAlignment = 64;

  protected:
    void* raw_alloc(size_t num_bytes) override;
    void raw_free(void* data, size_t num_bytes) override;
};

}  // namespace moerig::runtime
