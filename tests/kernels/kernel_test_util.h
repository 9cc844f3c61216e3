// Helpers shared by the CPU kernel tests: seeded random data and ggml-style normalised mean-squared error.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace moerig::testing {

/// Gaussian values with per-32-block scale changes and a few outliers, like real weights and activations.
inline std::vector<float> random_values(int64_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> block_scale(0.2f, 2.0f);
    std::vector<float> v(n);
    float s = scale;
    for (int64_t i = 0; i < n; ++i) {
        if (i % 32 == 0) s = scale * block_scale(rng);
        v[i] = normal(rng) * s;
        if (rng() % 97 == 0) v[i] *= 6.0f;
    }
    return v;
}

/// sum (a - b)^2 / sum b^2 (b is the reference); infinity if any value of a is NaN or Inf.
inline double nmse(const float* a, const float* b, int64_t n) {
    double err = 0, ref = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (!std::isfinite(a[i])) return std::numeric_limits<double>::infinity();
        err += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
        ref += static_cast<double>(b[i]) * b[i];
    }
    return ref > 0 ? err / ref : err;
}

inline double nmse(const std::vector<float>& a, const std::vector<float>& b) {
    return nmse(a.data(), b.data(), static_cast<int64_t>(b.size()));
}

}  // namespace moerig::testing
