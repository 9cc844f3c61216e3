// Byte accounting per card: charge/release by kind under a mutex, and the OutOfMemoryError message.
#include "runtime/memory_budget.h"

#include <fmt/format.h>

#include <algorithm>

#include "kernels/error.h"

namespace moerig::runtime {

const char* memory_kind_name(MemoryKind kind) {
    switch (kind) {
        case MemoryKind::kWeights:
            return "weights";
        case MemoryKind::kKv:
            return "kv";
        case MemoryKind::kActivations:
            return "activations";
        case MemoryKind::kComm:
            return "comm";
    }
    return "?";
}

std::string format_bytes(size_t num_bytes) {
    const double b = static_cast<double>(num_bytes);
    if (num_bytes >= (size_t{1} << 30)) return fmt::format("{:.2f} GiB", b / (1u << 30));
    if (num_bytes >= (size_t{1} << 20)) return fmt::format("{:.1f} MiB", b / (1u << 20));
    if (num_bytes >= (size_t{1} << 10)) return fmt::format("{:.1f} KiB", b / (1u << 10));
    return fmt::format("{} B", num_bytes);
}

MemoryBudget::MemoryBudget(std::string card_name, size_t budget_bytes) : card_name_(std::move(card_name)) {
    info_.budget_bytes = budget_bytes;
}

void MemoryBudget::charge(size_t num_bytes, MemoryKind kind) {
    std::lock_guard lock(mutex_);
    if (num_bytes > info_.budget_bytes - info_.used_bytes) {
        std::string held;
        for (int k = 0; k < kNumMemoryKinds; ++k) {
            held += fmt::format("{}{} {}", k ? ", " : "", memory_kind_name(static_cast<MemoryKind>(k)),
                                format_bytes(info_.by_kind[k]));
        }
        MOERIG_THROW(OutOfMemoryError,
                     "card '{}' is out of memory: requested {} ({} bytes) for {}, but {} of its {} budget is "
                     "held ({}), leaving {}",
                     card_name_, format_bytes(num_bytes), num_bytes, memory_kind_name(kind),
                     format_bytes(info_.used_bytes), format_bytes(info_.budget_bytes), held,
                     format_bytes(info_.budget_bytes - info_.used_bytes));
    }
    info_.used_bytes += num_bytes;
    info_.by_kind[static_cast<int>(kind)] += num_bytes;
    info_.peak_bytes = std::max(info_.peak_bytes, info_.used_bytes);
}

void MemoryBudget::release(size_t num_bytes, MemoryKind kind) {
    std::lock_guard lock(mutex_);
    size_t& held = info_.by_kind[static_cast<int>(kind)];
    MOERIG_ASSERT(num_bytes <= held);
    held -= num_bytes;
    info_.used_bytes -= num_bytes;
}

bool MemoryBudget::fits(size_t num_bytes) const {
    std::lock_guard lock(mutex_);
    return num_bytes <= info_.budget_bytes - info_.used_bytes;
}

MemoryInfo MemoryBudget::info() const {
    std::lock_guard lock(mutex_);
    return info_;
}

}  // namespace moerig::runtime
