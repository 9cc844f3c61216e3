// The memory budget of one card: every allocation is charged to it by kind (weights, KV cache,
// activations, communication buffers), and a request that would exceed it is refused with an
// OutOfMemoryError that names the card, the request and what is already held.
#pragma once

#include <array>
#include <cstddef>
#include <mutex>
#include <string>

namespace moerig::runtime {

/// What an allocation is for; budgets and reports break usage down by these.
enum class MemoryKind : int { kWeights = 0, kKv = 1, kActivations = 2, kComm = 3 };
inline constexpr int kNumMemoryKinds = 4;

/// "weights", "kv", "activations", "comm".
const char* memory_kind_name(MemoryKind kind);

/// Snapshot of a budget.
struct MemoryInfo {
    size_t budget_bytes = 0;                           ///< cap; never exceeded
    size_t used_bytes = 0;                             ///< currently held, all kinds
    size_t peak_bytes = 0;                             ///< highest used_bytes seen
    std::array<size_t, kNumMemoryKinds> by_kind = {};  ///< currently held per MemoryKind
    size_t free_bytes() const { return budget_bytes - used_bytes; }
    size_t held(MemoryKind kind) const { return by_kind[static_cast<int>(kind)]; }
};

/// Thread-safe byte accounting against a fixed cap.
class MemoryBudget {
  public:
    MemoryBudget(std::string card_name, size_t budget_bytes);

    /// Charges num_bytes to kind, or throws OutOfMemoryError and charges nothing.
    void charge(size_t num_bytes, MemoryKind kind);
    /// Returns bytes charged earlier (must not exceed what kind holds).
    void release(size_t num_bytes, MemoryKind kind);
    /// True when num_bytes more would fit now.
    bool fits(size_t num_bytes) const;

    MemoryInfo info() const;
    const std::string& card_name() const { return card_name_; }

  private:
    std::string card_name_;
    mutable std::mutex mutex_;
    MemoryInfo info_;
};

/// Bytes charged to a budget for memory the card holds by other means than Device::alloc (a virtual
/// card's share of the mapped model file, a KV cache the engine allocates itself); released when
/// destroyed. Move-only.
class MemoryReservation {
  public:
    MemoryReservation() = default;
    /// Charges num_bytes to kind or throws OutOfMemoryError.
    MemoryReservation(MemoryBudget& budget, size_t num_bytes, MemoryKind kind)
        : budget_(&budget), num_bytes_(num_bytes), kind_(kind) {
        budget.charge(num_bytes, kind);
    }
    MemoryReservation(MemoryReservation&& o) noexcept { *this = std::move(o); }
    MemoryReservation& operator=(MemoryReservation&& o) noexcept {
        if (this != &o) {
            reset();
            budget_ = o.budget_;
            num_bytes_ = o.num_bytes_;
            kind_ = o.kind_;
            o.budget_ = nullptr;
            o.num_bytes_ = 0;
        }
        return *this;
    }
    ~MemoryReservation() { reset(); }
    void reset() {
        if (budget_ != nullptr) budget_->release(num_bytes_, kind_);
        budget_ = nullptr;
        num_bytes_ = 0;
    }
    size_t num_bytes() const { return num_bytes_; }

  private:
    MemoryBudget* budget_ = nullptr;
    size_t num_bytes_ = 0;
    MemoryKind kind_ = MemoryKind::kWeights;
};

/// "1.50 GiB" / "12.0 MiB" / "512 B": sizes in error messages and reports.
std::string format_bytes(size_t num_bytes);

}  // namespace moerig::runtime
