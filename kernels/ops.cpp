// Row-wise and element-wise float ops in ggml's exact forms (double accumulation for norms and softmax sums,
// scale applied as one float multiply), so that CPU results follow llama.cpp's CPU backend closely.
#include "kernels/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace moerig::kernels {

void rms_norm(const float* x, const float* weight, float* y, int64_t n, float eps) {
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
    const float mean = static_cast<float>(sum / n);
    const float s = 1.0f / std::sqrt(mean + eps);
    if (weight) {
        for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * s) * weight[i];
    } else {
        for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s;
    }
}

void rms_norm_rows(const float* x, const float* weight, float* y, int64_t num_rows, int64_t n, float eps) {
    for (int64_t r = 0; r < num_rows; ++r) rms_norm(x + r * n, weight, y + r * n, n, eps);
}

void layer_norm(const float* x, const float* weight, const float* bias, float* y, int64_t n, float eps) {
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += x[i];
    const float mean = static_cast<float>(sum / n);
    double var = 0;
    for (int64_t i = 0; i < n; ++i) var += static_cast<double>((x[i] - mean) * (x[i] - mean));
    const float s = 1.0f / std::sqrt(static_cast<float>(var / n) + eps);
    for (int64_t i = 0; i < n; ++i) {
        float v = (x[i] - mean) * s;
        if (weight) v *= weight[i];
        if (bias) v += bias[i];
        y[i] = v;
    }
}

void add(const float* a, const float* b, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void mul(const float* a, const float* b, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}

void scale(const float* a, float s, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = a[i] * s;
}

void axpy(float s, const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] += s * x[i];
}

void silu(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] / (1.0f + std::exp(-x[i]));
}

void swiglu(const float* gate, const float* up, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void swiglu_oai(const float* gate, const float* up, float* y, int64_t n, float alpha, float limit) {
    for (int64_t i = 0; i < n; ++i) {
        const float g = std::min(gate[i], limit);
        const float u = std::clamp(up[i], -limit, limit);
        const float glu = g / (1.0f + std::exp(alpha * -g));
        y[i] = glu * (u + 1.0f);
    }
}

void gelu(const float* x, float* y, int64_t n) {
    constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f;
    constexpr float kCoef = 0.044715f;
    for (int64_t i = 0; i < n; ++i) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.0f + std::tanh(kSqrt2OverPi * v * (1.0f + kCoef * v * v)));
    }
}

void softmax(float* x, int64_t n) {
    float max = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) max = std::max(max, x[i]);
    if (max == -std::numeric_limits<float>::infinity()) {
        // Every entry masked: define the result as all zeros rather than NaN.
        std::fill(x, x + n, 0.0f);
        return;
    }
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
        const float e = std::exp(x[i] - max);
        sum += e;
        x[i] = e;
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void sigmoid(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + std::exp(-x[i]));
}

int64_t argmax(const float* x, int64_t n) {
    int64_t best = 0;
    float best_v = -std::numeric_limits<float>::infinity();
    bool found = false;
    for (int64_t i = 0; i < n; ++i) {
        if (x[i] > best_v || (!found && !std::isnan(x[i]))) {
            best = i;
            best_v = x[i];
            found = true;
        }
    }
    return best;
}

void top_k(const float* x, int64_t n, int64_t k, int32_t* idx) {
    k = std::min(k, n);
    auto key = [x](int32_t i) { return std::isnan(x[i]) ? -std::numeric_limits<float>::infinity() : x[i]; };
    auto better = [&](int32_t a, int32_t b) {
        const float va = key(a), vb = key(b);
        return va > vb || (va == vb && a < b);
    };
    if (k <= 16) {
        // Small k (routers, greedy sampling): insertion into a sorted prefix, one pass over x.
        int64_t size = 0;
        for (int32_t i = 0; i < n; ++i) {
            if (size == k && !better(i, idx[k - 1])) continue;
            int64_t pos = size < k ? size++ : k - 1;
            while (pos > 0 && better(i, idx[pos - 1])) {
                idx[pos] = idx[pos - 1];
                --pos;
            }
            idx[pos] = i;
        }
        return;
    }
    std::vector<int32_t> all(n);
    std::iota(all.begin(), all.end(), 0);
    std::partial_sort(all.begin(), all.begin() + k, all.end(), better);
    std::copy(all.begin(), all.begin() + k, idx);
}

}  // namespace moerig::kernels
