// RoPE following ggml's CPU rope: theta advanced by a float recurrence (theta *= base^(-2/n_dims)), the YaRN
// ramp between interpolated and extrapolated angles, and mscale folded into cos/sin.
#include "kernels/rope.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/error.h"

namespace moerig::kernels {
namespace {

constexpr float kPi = 3.14159265358979323846f;

float yarn_corr_dim(int64_t n_dims, int64_t n_ctx_orig, float n_rot, float base) {
    return n_dims * std::log(n_ctx_orig / (n_rot * 2 * kPi)) / (2 * std::log(base));
}

float yarn_ramp(float low, float high, int64_t i0) {
    const float y = (i0 / 2 - low) / std::max(0.001f, high - low);
    return 1 - std::min(1.0f, std::max(0.0f, y));
}

}  // namespace

void rope_yarn_corr_dims(const RopeParams& p, float dims[2]) {
    const float start = std::floor(yarn_corr_dim(p.n_dims, p.n_ctx_orig, p.beta_fast, p.freq_base));
    const float end = std::ceil(yarn_corr_dim(p.n_dims, p.n_ctx_orig, p.beta_slow, p.freq_base));
    dims[0] = std::max(0.0f, start);
    dims[1] = std::min(static_cast<float>(p.n_dims - 1), end);
}

void rope_cache(const RopeParams& p, float position, float* cos_sin) {
    MOERIG_CHECK(p.n_dims > 0 && p.n_dims % 2 == 0, ConfigError, "rope: n_dims {} must be even and positive", p.n_dims);
    float corr[2];
    rope_yarn_corr_dims(p, corr);
    const float theta_scale = std::pow(p.freq_base, -2.0f / p.n_dims);
    float theta = position;
    for (int64_t i0 = 0; i0 < p.n_dims; i0 += 2) {
        const float ff = p.freq_factors ? p.freq_factors[i0 / 2] : 1.0f;
        const float theta_extrap = theta / ff;
        const float theta_interp = p.freq_scale * theta_extrap;
        float t = theta_interp;
        float mscale = p.attn_factor;
        if (p.ext_factor != 0.0f) {
            const float ramp_mix = yarn_ramp(corr[0], corr[1], i0) * p.ext_factor;
            t = theta_interp * (1 - ramp_mix) + theta_extrap * ramp_mix;
            mscale *= 1.0f + 0.1f * std::log(1.0f / p.freq_scale);
        }
        cos_sin[i0] = std::cos(t) * mscale;
        cos_sin[i0 + 1] = std::sin(t) * mscale;
        theta *= theta_scale;
    }
}

void rope(const RopeParams& p, float* x, int64_t num_tokens, int64_t num_heads, int64_t token_stride,
          int64_t head_stride, const int32_t* positions) {
    thread_local std::vector<float> cache;
    cache.resize(p.n_dims);
    const int64_t half = p.n_dims / 2;
    for (int64_t t = 0; t < num_tokens; ++t) {
        rope_cache(p, static_cast<float>(positions[t]), cache.data());
        for (int64_t h = 0; h < num_heads; ++h) {
            float* v = x + t * token_stride + h * head_stride;
            for (int64_t i0 = 0; i0 < p.n_dims; i0 += 2) {
                const float c = cache[i0], s = cache[i0 + 1];
                const int64_t a = p.neox ? i0 / 2 : i0;
                const int64_t b = p.neox ? i0 / 2 + half : i0 + 1;
                const float x0 = v[a], x1 = v[b];
                v[a] = x0 * c - x1 * s;
                v[b] = x0 * s + x1 * c;
            }
        }
    }
}

}  // namespace moerig::kernels
