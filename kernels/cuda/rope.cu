// RoPE: one thread per rotated pair. theta_i = pos * theta_scale^i (/ freq factor), then ggml's YaRN
// mix of interpolated and extrapolated angles with the ramp over the correction dims, and mscale.
#include <cmath>

#include "kernels/cuda/check.h"
#include "kernels/cuda/op_error.h"
#include "kernels/cuda/rope.h"

namespace moerig::kernels::cuda {
namespace {

struct RopeArgs {
    float* x;
    int64_t num_tokens, num_heads, token_stride, head_stride;
    const int32_t* positions;
    const float* freq_factors;
    int n_dims;
    bool neox;
    float theta_scale, freq_scale, ext_factor, attn_factor, corr_low, corr_high;
};

__global__ void rope_kernel(RopeArgs a) {
    const int half = a.n_dims / 2;
    const int64_t total = a.num_tokens * a.num_heads * half;
    for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
         idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int i = static_cast<int>(idx % half);
        const int64_t th = idx / half;
        const int64_t h = th % a.num_heads;
        const int64_t t = th / a.num_heads;
        float* xh = a.x + t * a.token_stride + h * a.head_stride;
        const float pos = static_cast<float>(a.positions[t]);
        // ggml's CPU recurrence (theta *= theta_scale per pair), so angles match the CPU bit for bit.
        float theta_base = pos;
        for (int r = 0; r < i; ++r) theta_base *= a.theta_scale;
        const float theta_extrap = a.freq_factors != nullptr ? theta_base / a.freq_factors[i] : theta_base;
        const float theta_interp = a.freq_scale * theta_extrap;
        float theta = theta_interp;
        float mscale = a.attn_factor;
        if (a.ext_factor != 0.0f) {
            const float y = (static_cast<float>(i) - a.corr_low) / fmaxf(0.001f, a.corr_high - a.corr_low);
            const float ramp_mix = (1.0f - fminf(1.0f, fmaxf(0.0f, y))) * a.ext_factor;
            // Rounded products (no FMA contraction): a one-ulp change of a large angle is visible.
            theta = __fadd_rn(__fmul_rn(theta_interp, 1.0f - ramp_mix), __fmul_rn(theta_extrap, ramp_mix));
            mscale *= 1.0f + 0.1f * logf(1.0f / a.freq_scale);
        }
        const float c = cosf(theta) * mscale;
        const float s = sinf(theta) * mscale;
        const int i0 = a.neox ? i : 2 * i;
        const int i1 = a.neox ? i + half : 2 * i + 1;
        const float x0 = xh[i0], x1 = xh[i1];
        xh[i0] = x0 * c - x1 * s;
        xh[i1] = x0 * s + x1 * c;
    }
}

}  // namespace

void rope(const RopeParams& p, float* x, int64_t num_tokens, int64_t num_heads, int64_t token_stride,
          int64_t head_stride, const int32_t* positions, cudaStream_t stream) {
    MOERIG_OP_REQUIRE(p.n_dims > 0 && p.n_dims % 2 == 0, "cuda::rope");
    MOERIG_OP_REQUIRE(positions != nullptr, "cuda::rope");
    if (num_tokens <= 0 || num_heads <= 0) return;
    RopeArgs a{};
    a.x = x;
    a.num_tokens = num_tokens;
    a.num_heads = num_heads;
    a.token_stride = token_stride;
    a.head_stride = head_stride;
    a.positions = positions;
    a.freq_factors = p.freq_factors;
    a.n_dims = static_cast<int>(p.n_dims);
    a.neox = p.neox;
    a.theta_scale = std::pow(p.freq_base, -2.0f / static_cast<float>(p.n_dims));
    a.freq_scale = p.freq_scale;
    a.ext_factor = p.ext_factor;
    a.attn_factor = p.attn_factor;
    // ggml_rope_yarn_corr_dims: the dimension pairs whose wavelength spans beta_fast / beta_slow rotations.
    const float n_dims = static_cast<float>(p.n_dims);
    const float ctx = static_cast<float>(p.n_ctx_orig);
    auto corr_dim = [&](float n_rot) {
        return n_dims * std::log(ctx / (n_rot * 2.0f * 3.14159265358979323846f)) / (2.0f * std::log(p.freq_base));
    };
    a.corr_low = std::fmax(0.0f, std::floor(corr_dim(p.beta_fast)));
    a.corr_high = std::fmin(n_dims - 1.0f, std::ceil(corr_dim(p.beta_slow)));
    const int64_t total = num_tokens * num_heads * (p.n_dims / 2);
    const int64_t blocks = (total + 255) / 256;
    rope_kernel<<<static_cast<unsigned>(blocks < 65535LL * 16 ? blocks : 65535LL * 16), 256, 0, stream>>>(a);
    MOERIG_CUDA_CHECK(cudaGetLastError());
}

}  // namespace moerig::kernels::cuda
