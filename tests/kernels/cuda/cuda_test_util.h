// Helpers for the CUDA twin tests: skip without a GPU, RAII device arrays, seeded random data, and the
// ggml test-backend-ops style comparison (NaN/Inf check first, then normalised mean-squared error).
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cuda/check.h"
#include "kernels/dtype.h"
#include "kernels/quant.h"

namespace moerig::kernels::cuda::test {

/// Skips the current test when the machine has no usable CUDA device.
#define MOERIG_REQUIRE_GPU()                                                                    \
    do {                                                                                        \
        if (::moerig::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA GPU on this machine"; \
    } while (0)

/// Owns count elements of T on the current device.
template <typename T>
class DeviceArray {
  public:
    explicit DeviceArray(size_t count) : count_(count) {
        MOERIG_CUDA_CHECK(cudaMalloc(&data_, count_ * sizeof(T) + 16));
        MOERIG_CUDA_CHECK(cudaMemset(data_, 0, count_ * sizeof(T) + 16));
    }
    explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
    ~DeviceArray() { cudaFree(data_); }
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;

    void upload(const std::vector<T>& host) {
        MOERIG_CUDA_CHECK(cudaMemcpy(data_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
    }
    std::vector<T> download() const {
        std::vector<T> host(count_);
        MOERIG_CUDA_CHECK(cudaDeviceSynchronize());
        MOERIG_CUDA_CHECK(cudaMemcpy(host.data(), data_, count_ * sizeof(T), cudaMemcpyDeviceToHost));
        return host;
    }
    T* get() const { return data_; }
    size_t size() const { return count_; }

  private:
    T* data_ = nullptr;
    size_t count_ = 0;
};

inline std::vector<float> random_floats(size_t n, uint32_t seed, float stddev = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, stddev);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

/// rows x cols random weights (stddev 0.5) quantised to `type` row by row with the CPU quantiser.
inline std::vector<uint8_t> quantized_matrix(DType type, int64_t rows, int64_t cols, uint32_t seed) {
    const auto values = random_floats(static_cast<size_t>(rows * cols), seed, 0.5f);
    const size_t rb = row_bytes(type, cols);
    std::vector<uint8_t> bytes(rb * static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) quantize_row(type, values.data() + r * cols, bytes.data() + r * rb, cols);
    return bytes;
}

/// sum (ref - got)^2 / sum ref^2; a failed check if either side holds NaN or Inf.
inline double nmse(const std::vector<float>& ref, const std::vector<float>& got) {
    EXPECT_EQ(ref.size(), got.size());
    double err = 0, norm = 0;
    for (size_t i = 0; i < ref.size() && i < got.size(); ++i) {
        if (!std::isfinite(ref[i]) || !std::isfinite(got[i])) {
            ADD_FAILURE() << "non-finite value at " << i << ": ref " << ref[i] << ", got " << got[i];
            return INFINITY;
        }
        const double d = static_cast<double>(ref[i]) - got[i];
        err += d * d;
        norm += static_cast<double>(ref[i]) * ref[i];
    }
    return norm > 0 ? err / norm : err;
}

}  // namespace moerig::kernels::cuda::test
