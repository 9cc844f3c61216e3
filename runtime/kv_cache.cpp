// KvCache storage. Memory is reserved up front for every slot so rows never move while a sequence grows; pages
// are only touched as positions fill. F16 rows are rounded on write and widened by the attention kernel on read.
#include "runtime/kv_cache.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <string>

#include "kernels/error.h"
#include "kernels/quant.h"

namespace moerig::runtime {

namespace {

struct Shape {
    int64_t k_row = 0, v_row = 0, ring = 0;
};

Shape shape_of(const ModelHParams& hp, int64_t capacity, int64_t layer_begin, int64_t layer_end,
               const KvOptions& options) {
    MOERIG_CHECK(capacity > 0, ConfigError, "KV cache capacity must be > 0, got {}", capacity);
    MOERIG_CHECK(0 <= layer_begin && layer_begin <= layer_end && layer_end <= hp.n_layer, ConfigError,
                 "KV cache layer range [{}, {}) is outside the model's {} layers", layer_begin, layer_end, hp.n_layer);
    MOERIG_CHECK(options.max_step_rows >= 0, ConfigError, "KV cache: max_step_rows must be >= 0 (0: any), got {}",
                 options.max_step_rows);
    check_kv_dtype(options.dtype, "KV cache");
    Shape s;
    if (hp.is_mla()) {
        s.k_row = hp.kv_lora_rank + hp.n_rot;  // latent first, then the roped key part
        s.v_row = 0;
    } else {
        s.k_row = hp.n_head_kv * hp.head_dim_k;
        s.v_row = hp.n_head_kv * hp.head_dim_v;
    }
    s.ring = capacity;
    bool any_swa = false;
    for (int64_t l = layer_begin; l < layer_end; ++l) any_swa = any_swa || hp.is_swa(l);
    // A step of T new tokens writes all T rows before its first query reads the n_swa - 1 positions before it.
    if (any_swa && options.max_step_rows > 0) s.ring = std::min(capacity, hp.n_swa + options.max_step_rows - 1);
    return s;
}

int64_t layer_slots(const ModelHParams& hp, const Shape& s, int64_t capacity, int64_t layer_idx) {
    return hp.is_swa(layer_idx) ? s.ring : capacity;
}

}  // namespace

DType check_kv_dtype(DType dtype, std::string_view what) {
    MOERIG_CHECK(dtype == DType::F32 || dtype == DType::F16, ConfigError,
                 "{}: the CPU KV cache holds F32 or F16 rows, not {}", what, dtype_name(dtype));
    return dtype;
}

DType parse_kv_dtype(std::string_view name, std::string_view what) {
    std::string lower(name);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    MOERIG_CHECK(lower == "f32" || lower == "f16", ConfigError, "{}: the KV cache type must be f32 or f16, got '{}'",
                 what, name);
    return lower == "f16" ? DType::F16 : DType::F32;
}

KvCache::KvCache(const ModelHParams& hp, int64_t capacity, int64_t layer_begin, int64_t layer_end,
                 const KvOptions& options)
    : options_(options), capacity_(capacity), n_swa_(hp.n_swa), layer_begin_(layer_begin) {
    if (layer_end < 0) layer_end = hp.n_layer;
    const Shape s = shape_of(hp, capacity, layer_begin, layer_end, options);
    k_row_ = s.k_row;
    v_row_ = s.v_row;
    ring_ = s.ring;
    layers_.resize(static_cast<size_t>(layer_end - layer_begin));
    for (int64_t l = layer_begin; l < layer_end; ++l) {
        Layer& layer = layers_[static_cast<size_t>(l - layer_begin)];
        layer.slots = layer_slots(hp, s, capacity, l);
        layer.k.reset(new std::byte[static_cast<size_t>(layer.slots * k_row_) * elem()]);
        layer.v.reset(new std::byte[std::max<size_t>(static_cast<size_t>(layer.slots * v_row_) * elem(), 1)]);
    }
}

size_t KvCache::bytes_for(const ModelHParams& hp, int64_t capacity, int64_t layer_begin, int64_t layer_end,
                          const KvOptions& options) {
    const Shape s = shape_of(hp, capacity, layer_begin, layer_end, options);
    const size_t elem = options.dtype == DType::F16 ? 2 : 4;
    size_t total = 0;
    for (int64_t l = layer_begin; l < layer_end; ++l) {
        total += static_cast<size_t>(layer_slots(hp, s, capacity, l) * (s.k_row + s.v_row)) * elem;
    }
    return total;
}

size_t KvCache::idx(int64_t layer_idx) const {
    const auto i = layer_idx - layer_begin_;
    MOERIG_ASSERT(i >= 0 && i < static_cast<int64_t>(layers_.size()));
    return static_cast<size_t>(i);
}

void KvCache::write(std::byte* base, int64_t slot, int64_t n, const float* row) {
    if (options_.dtype == DType::F16) {
        kernels::quantize_row(DType::F16, row, base + static_cast<size_t>(slot * n) * 2, n);
    } else {
        std::memcpy(base + static_cast<size_t>(slot * n) * 4, row, static_cast<size_t>(n) * 4);
    }
}

void KvCache::read(const std::byte* base, int64_t slot, int64_t n, float* row) const {
    if (options_.dtype == DType::F16) {
        kernels::dequantize_row(DType::F16, base + static_cast<size_t>(slot * n) * 2, row, n);
    } else {
        std::memcpy(row, base + static_cast<size_t>(slot * n) * 4, static_cast<size_t>(n) * 4);
    }
}

void KvCache::write_k(int64_t layer_idx, int64_t pos, const float* row) {
    Layer& l = layers_[idx(layer_idx)];
    MOERIG_ASSERT(pos >= 0 && pos < capacity_);
    write(l.k.get(), pos % l.slots, k_row_, row);
}

void KvCache::write_v(int64_t layer_idx, int64_t pos, const float* row) {
    Layer& l = layers_[idx(layer_idx)];
    MOERIG_ASSERT(pos >= 0 && pos < capacity_);
    write(l.v.get(), pos % l.slots, v_row_, row);
}

void KvCache::read_k(int64_t layer_idx, int64_t pos, float* row) const {
    const Layer& l = layers_[idx(layer_idx)];
    MOERIG_ASSERT(pos >= 0 && pos < capacity_);
    read(l.k.get(), pos % l.slots, k_row_, row);
}

void KvCache::read_v(int64_t layer_idx, int64_t pos, float* row) const {
    const Layer& l = layers_[idx(layer_idx)];
    MOERIG_ASSERT(pos >= 0 && pos < capacity_);
    read(l.v.get(), pos % l.slots, v_row_, row);
}

void KvCache::bind(int64_t layer_idx, kernels::AttentionIo& io) const {
    const Layer& l = layers_[idx(layer_idx)];
    io.k = io.v = nullptr;
    io.k_f16 = io.v_f16 = nullptr;
    if (options_.dtype == DType::F16) {
        io.k_f16 = reinterpret_cast<const uint16_t*>(l.k.get());
        io.v_f16 = reinterpret_cast<const uint16_t*>(l.v.get());
    } else {
        io.k = reinterpret_cast<const float*>(l.k.get());
        io.v = reinterpret_cast<const float*>(l.v.get());
    }
    io.k_token_stride = k_row_;
    io.v_token_stride = v_row_;
    io.kv_ring = l.slots < capacity_ ? l.slots : 0;
}

void KvCache::bind_shared(int64_t layer_idx, kernels::AttentionIo& io) const {
    bind(layer_idx, io);
    io.v = io.k;
    io.v_f16 = io.k_f16;
    io.v_token_stride = k_row_;
}

size_t KvCache::bytes() const {
    size_t total = 0;
    for (const Layer& l : layers_) total += static_cast<size_t>(l.slots * (k_row_ + v_row_)) * elem();
    return total;
}

size_t KvCache::layer_bytes(int64_t layer_idx) const {
    return static_cast<size_t>(slots(layer_idx) * (k_row_ + v_row_)) * elem();
}

}  // namespace moerig::runtime
