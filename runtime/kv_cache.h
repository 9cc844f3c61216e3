// The key/value cache of one sequence: per layer, K and V rows for positions [0, capacity), stored as F32 or F16
// (llama.cpp's default: half the bytes). Sliding-window layers may keep only a ring of the positions they can
// still see. MLA layers cache the compressed latent (kv_lora_rank + rope dims) once per token instead of
// per-head K/V.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "kernels/attention.h"
#include "kernels/dtype.h"
#include "runtime/hparams.h"

namespace moerig::runtime {

/// How a KvCache stores its rows.
struct KvOptions {
    DType dtype = DType::F32;  ///< F32 or F16 (rows rounded to nearest even as they are written)
    /// New positions one step may add to the sequence. > 0: sliding-window layers keep a ring of
    /// min(capacity, n_swa + max_step_rows - 1) positions (enough for a step's first query to see its window);
    /// 0: every layer keeps the whole capacity and steps are unbounded.
    int64_t max_step_rows = 0;
};

/// dtype if the CPU KV cache can hold it (F32, F16); ConfigError naming `what` otherwise.
DType check_kv_dtype(DType dtype, std::string_view what);
/// "f32" / "f16" (any case) -> the type; ConfigError naming `what` (e.g. "--kv-type") for anything else.
DType parse_kv_dtype(std::string_view name, std::string_view what);

class KvCache {
  public:
    /// Caches up to `capacity` positions of layers [layer_begin, layer_end) (default: all layers).
    KvCache(const ModelHParams& hp, int64_t capacity, int64_t layer_begin = 0, int64_t layer_end = -1,
            const KvOptions& options = {});

    /// Bytes a cache with these arguments holds (what bytes() of it returns), without allocating it.
    static size_t bytes_for(const ModelHParams& hp, int64_t capacity, int64_t layer_begin, int64_t layer_end,
                            const KvOptions& options);

    int64_t capacity() const { return capacity_; }
    DType dtype() const { return options_.dtype; }
    /// Values per cached position of K and of V (0 for V in MLA layers: V is the head of the K row).
    int64_t k_row() const { return k_row_; }
    int64_t v_row() const { return v_row_; }

    /// Rows the layer holds: capacity, or the sliding-window ring.
    int64_t slots(int64_t layer_idx) const { return layers_[idx(layer_idx)].slots; }
    /// Slots of this cache's sliding-window layers (capacity when it has none or they hold every position).
    int64_t ring() const { return ring_; }
    /// True when the sliding-window layers hold fewer positions than the capacity (position p in slot p % ring()).
    bool wraps() const { return ring_ < capacity_; }
    /// The most new positions one step may add (0: any number).
    int64_t max_step_rows() const { return wraps() ? options_.max_step_rows : 0; }
    /// The window the ring was sized for (0 when the cache does not wrap).
    int64_t window() const { return wraps() ? n_swa_ : 0; }

    /// Stores the K (or V) row of `pos` in layer layer_idx (which must be in this cache's range), rounding to F16
    /// in an F16 cache. Rows are k_row() (v_row()) floats.
    void write_k(int64_t layer_idx, int64_t pos, const float* row);
    void write_v(int64_t layer_idx, int64_t pos, const float* row);
    /// Reads the K (or V) row of `pos` back as floats (tests, debugging).
    void read_k(int64_t layer_idx, int64_t pos, float* row) const;
    void read_v(int64_t layer_idx, int64_t pos, float* row) const;

    /// Points io's k/v (or k_f16/v_f16) at the layer's rows with row strides and, for a wrapping layer, the ring.
    /// Head strides and the rest of io are the caller's.
    void bind(int64_t layer_idx, kernels::AttentionIo& io) const;
    /// The same with V read from the K rows (MLA absorbed: the latent is the value).
    void bind_shared(int64_t layer_idx, kernels::AttentionIo& io) const;

    size_t bytes() const;
    size_t layer_bytes(int64_t layer_idx) const;

  private:
    struct Layer {
        int64_t slots = 0;
        std::unique_ptr<std::byte[]> k, v;  // uninitialised: pages are touched as positions fill
    };
    size_t idx(int64_t layer_idx) const;
    size_t elem() const { return options_.dtype == DType::F16 ? 2 : 4; }
    void write(std::byte* base, int64_t slot, int64_t n, const float* row);
    void read(const std::byte* base, int64_t slot, int64_t n, float* row) const;

    KvOptions options_;
    int64_t capacity_ = 0, ring_ = 0, n_swa_ = 0, k_row_ = 0, v_row_ = 0, layer_begin_ = 0;
    std::vector<Layer> layers_;
};

}  // namespace moerig::runtime
