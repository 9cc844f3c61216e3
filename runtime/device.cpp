// Device base: budget-checked allocation and the RAII Buffer that returns bytes on release.
#include "runtime/device.h"

#include "kernels/error.h"

namespace moerig::runtime {

Buffer& Buffer::operator=(Buffer&& other) noexcept {
    if (this != &other) {
        reset();
        device_ = other.device_;
        data_ = other.data_;
        num_bytes_ = other.num_bytes_;
        kind_ = other.kind_;
        other.device_ = nullptr;
        other.data_ = nullptr;
        other.num_bytes_ = 0;
    }
    return *this;
}

void Buffer::reset() {
    if (device_ != nullptr) device_->release(data_, num_bytes_, kind_);
    device_ = nullptr;
    data_ = nullptr;
    num_bytes_ = 0;
}

Buffer Device::alloc(size_t num_bytes, MemoryKind kind) {
    budget_.charge(num_bytes, kind);  // throws before the allocator is touched
    void* data = num_bytes == 0 ? nullptr : raw_alloc(num_bytes);
    if (num_bytes != 0 && data == nullptr) {
        budget_.release(num_bytes, kind);
        MOERIG_THROW(OutOfMemoryError, "card '{}': the allocator refused {} for {} although the budget allowed it",
                     name(), format_bytes(num_bytes), memory_kind_name(kind));
    }
    return Buffer(this, data, num_bytes, kind);
}

void Device::release(void* data, size_t num_bytes, MemoryKind kind) {
    if (data != nullptr) raw_free(data, num_bytes);
    budget_.release(num_bytes, kind);
}

}  // namespace moerig::runtime
