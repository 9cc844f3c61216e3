// Test helper: writes small GGUF images in memory (metadata of every type, tensor tables, data),
// so that parser tests and planner tests need no binary fixtures for the header paths.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/dtype.h"

namespace moerig::testing {

class GgufBuilder {
  public:
    explicit GgufBuilder(uint32_t alignment = 32) : alignment_(alignment) {}

    GgufBuilder& kv_u32(const std::string& key, uint32_t v) { return scalar(key, 4, &v, 4); }
    GgufBuilder& kv_i32(const std::string& key, int32_t v) { return scalar(key, 5, &v, 4); }
    GgufBuilder& kv_f32(const std::string& key, float v) { return scalar(key, 6, &v, 4); }
    GgufBuilder& kv_bool(const std::string& key, bool v) {
        uint8_t b = v;
        return scalar(key, 7, &b, 1);
    }
    GgufBuilder& kv_u64(const std::string& key, uint64_t v) { return scalar(key, 10, &v, 8); }
    GgufBuilder& kv_str(const std::string& key, const std::string& v) {
        str(kv_, key);
        u32(kv_, 8);
        str(kv_, v);
        ++num_kv_;
        return *this;
    }
    GgufBuilder& kv_strs(const std::string& key, const std::vector<std::string>& vs) {
        str(kv_, key);
        u32(kv_, 9);
        u32(kv_, 8);
        u64(kv_, vs.size());
        for (const auto& v : vs) str(kv_, v);
        ++num_kv_;
        return *this;
    }
    GgufBuilder& kv_i32s(const std::string& key, const std::vector<int32_t>& vs) {
        str(kv_, key);
        u32(kv_, 9);
        u32(kv_, 5);
        u64(kv_, vs.size());
        for (int32_t v : vs) raw(kv_, &v, 4);
        ++num_kv_;
        return *this;
    }
    GgufBuilder& kv_f32s(const std::string& key, const std::vector<float>& vs) {
        str(kv_, key);
        u32(kv_, 9);
        u32(kv_, 6);
        u64(kv_, vs.size());
        for (float v : vs) raw(kv_, &v, 4);
        ++num_kv_;
        return *this;
    }

    /// Adds a tensor; data (if given) must be dtype_bytes(type, elems) long, else zeros are written.
    GgufBuilder& tensor(const std::string& name, std::vector<uint64_t> dims, DType type,
                        const std::vector<uint8_t>& data = {}) {
        uint64_t elems = 1;
        for (auto d : dims) elems *= d;
        const uint64_t nbytes = dtype_bytes(type, elems);
        while (data_.size() % alignment_) data_.push_back(0);
        str(ti_, name);
        u32(ti_, static_cast<uint32_t>(dims.size()));
        for (auto d : dims) u64(ti_, d);
        u32(ti_, static_cast<uint32_t>(type));
        u64(ti_, data_.size());
        if (data.empty())
            data_.resize(data_.size() + nbytes, 0);
        else
            data_.insert(data_.end(), data.begin(), data.end());
        ++num_tensors_;
        return *this;
    }

    std::vector<uint8_t> build() const {
        std::vector<uint8_t> out;
        raw(out, "GGUF", 4);
        u32(out, 3);
        u64(out, num_tensors_);
        u64(out, num_kv_);
        out.insert(out.end(), kv_.begin(), kv_.end());
        out.insert(out.end(), ti_.begin(), ti_.end());
        while (out.size() % alignment_) out.push_back(0);
        out.insert(out.end(), data_.begin(), data_.end());
        return out;
    }

    void write(const std::string& path) const;

  private:
    GgufBuilder& scalar(const std::string& key, uint32_t type, const void* v, size_t n) {
        str(kv_, key);
        u32(kv_, type);
        raw(kv_, v, n);
        ++num_kv_;
        return *this;
    }
    static void raw(std::vector<uint8_t>& b, const void* p, size_t n) {
        const auto* c = static_cast<const uint8_t*>(p);
        b.insert(b.end(), c, c + n);
    }
    static void u32(std::vector<uint8_t>& b, uint32_t v) { raw(b, &v, 4); }
    static void u64(std::vector<uint8_t>& b, uint64_t v) { raw(b, &v, 8); }
    static void str(std::vector<uint8_t>& b, const std::string& s) {
        u64(b, s.size());
        raw(b, s.data(), s.size());
    }

    uint32_t alignment_;
    uint64_t num_kv_ = 0, num_tensors_ = 0;
    std::vector<uint8_t> kv_, ti_, data_;
};

inline void GgufBuilder::write(const std::string& path) const {
    auto bytes = build();
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) throw std::runtime_error("cannot write " + path);
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
}

}  // namespace moerig::testing
