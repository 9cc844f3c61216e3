// A card as the runtime sees it: a small ggml-backend-style interface (memory info, alloc, free, copy,
// synchronize) whose every allocation is charged to the card's memory budget. CpuDevice (cpu_device.h)
// is the virtual card used by tests; the CUDA device (runtime/cuda/) implements the same interface.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "runtime/memory_budget.h"

namespace moerig::runtime {

class Device;

/// Move-only owner of one allocation on a device; freeing (destruction or reset()) returns its bytes
/// to the budget. data() is a device pointer: dereference it on the host only when
/// Device::host_accessible() is true.
class Buffer {
  public:
    Buffer() = default;
    Buffer(Device* device, void* data, size_t num_bytes, MemoryKind kind)
        : device_(device), data_(data), num_bytes_(num_bytes), kind_(kind) {}
    Buffer(Buffer&& other) noexcept { *this = std::move(other); }
    Buffer& operator=(Buffer&& other) noexcept;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    ~Buffer() { reset(); }

    /// Frees the allocation now (no-op when empty).
    void reset();

    void* data() const { return data_; }
    template <typename T>
    T* as() const {
        return static_cast<T*>(data_);
    }
    size_t num_bytes() const { return num_bytes_; }
    MemoryKind kind() const { return kind_; }
    Device* device() const { return device_; }
    explicit operator bool() const { return data_ != nullptr || num_bytes_ != 0; }

  private:
    Device* device_ = nullptr;
    void* data_ = nullptr;
    size_t num_bytes_ = 0;
    MemoryKind kind_ = MemoryKind::kActivations;
};

/// Static description of a device.
struct DeviceProps {
    std::string name;              ///< e.g. "card0 (RTX 3060 12GB)"; used in every error message about the card
    int device_idx = 0;            ///< index among the cards of this process (rank on the local rig)
    bool host_accessible = false;  ///< data() pointers may be read and written by host code
    bool async_copies = false;     ///< copy_*_async really overlap; false: they complete before returning
    double mem_bandwidth_gbs = 0;  ///< memory bandwidth used by cost estimates (0 = unknown)
};

/// One card. The base class owns the budget accounting; implementations provide raw allocation and
/// copies. All members may be called from the card's own thread; memory_info() from any thread.
class Device {
  public:
    Device(DeviceProps props, size_t budget_bytes) : props_(std::move(props)), budget_(props_.name, budget_bytes) {}
    virtual ~Device() = default;
    Device(const Device&) = delete;
    Device& operator=(const Device&) = delete;

    const DeviceProps& props() const { return props_; }
    const std::string& name() const { return props_.name; }
    bool host_accessible() const { return props_.host_accessible; }

    /// Budget, bytes held per kind and peak; thread-safe snapshot.
    MemoryInfo memory_info() const { return budget_.info(); }
    MemoryBudget& budget() { return budget_; }

    /// Allocates num_bytes charged to kind. Throws OutOfMemoryError (naming the card, the request and
    /// what is held by kind) when the budget would be exceeded, before touching the allocator.
    Buffer alloc(size_t num_bytes, MemoryKind kind);

    /// Host → device, device → host and device → device (same card) copies. The *_async forms are
    /// ordered on the device's stream and complete by synchronize(); on devices without
    /// async_copies they complete before returning.
    virtual void copy_to_device(void* dst, const void* src, size_t num_bytes) = 0;
    virtual void copy_to_host(void* dst, const void* src, size_t num_bytes) = 0;
    virtual void copy_on_device(void* dst, const void* src, size_t num_bytes) = 0;
    virtual void copy_to_device_async(void* dst, const void* src, size_t num_bytes) {
        copy_to_device(dst, src, num_bytes);
    }
    virtual void copy_to_host_async(void* dst, const void* src, size_t num_bytes) { copy_to_host(dst, src, num_bytes); }

    /// Waits for all work queued on the device's stream.
    virtual void synchronize() {}

    /// Optional: the native stream (cudaStream_t for CUDA devices); nullptr where there is none.
    virtual void* native_stream() { return nullptr; }

  protected:
    /// Raw allocation without accounting; returns nullptr on allocator failure.
    virtual void* raw_alloc(size_t num_bytes) = 0;
    virtual void raw_free(void* data, size_t num_bytes) = 0;

  private:
    friend class Buffer;
    void release(void* data, size_t num_bytes, MemoryKind kind);

    DeviceProps props_;
    MemoryBudget budget_;
};

}  // namespace moerig::runtime
