// Scalar conversions and the reference (de)quantisers of every supported block type, following ggml's
// reference algorithms step by step (same rounding, same search loops) so that quantised test weights and
// activations match what llama.cpp would produce.
#include "kernels/quant.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "kernels/error.h"

// ggml's reference quantizers are built without fused multiply-add; contracting a*b+c here would change which
// scale the searches pick, and with it the bytes.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace moerig::kernels {
namespace {

constexpr float kGroupMaxEps = 1e-15f;

// Round to nearest, ties to even, for |x| < 2^22 (ggml's nearest_int trick).
inline int nearest_int(float fval) {
    float val = fval + 12582912.f;
    int i;
    std::memcpy(&i, &val, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

inline float h2f(uint16_t h) {
    return fp16_to_fp32(h);
}
inline uint16_t f2h(float f) {
    return fp32_to_fp16(f);
}

// ---- 32-wide types -------------------------------------------------------------------------------------

void dequant_q4_0(const BlockQ4_0* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = h2f(b[i].d);
        for (int j = 0; j < kQK / 2; ++j) {
            y[j] = ((b[i].qs[j] & 0x0F) - 8) * d;
            y[j + kQK / 2] = ((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void quant_q4_0(const float* x, BlockQ4_0* b, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < kQK; ++j) {
            if (amax < std::fabs(x[j])) {
                amax = std::fabs(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        b[i].d = f2h(d);
        for (int j = 0; j < kQK / 2; ++j) {
            const uint8_t q0 = std::min<int8_t>(15, static_cast<int8_t>(x[j] * id + 8.5f));
            const uint8_t q1 = std::min<int8_t>(15, static_cast<int8_t>(x[j + kQK / 2] * id + 8.5f));
            b[i].qs[j] = q0 | (q1 << 4);
        }
    }
}

void dequant_q4_1(const BlockQ4_1* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = h2f(b[i].d), m = h2f(b[i].m);
        for (int j = 0; j < kQK / 2; ++j) {
            y[j] = (b[i].qs[j] & 0x0F) * d + m;
            y[j + kQK / 2] = (b[i].qs[j] >> 4) * d + m;
        }
    }
}

void quant_q4_1(const float* x, BlockQ4_1* b, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < kQK; ++j) {
            min = std::min(min, x[j]);
            max = std::max(max, x[j]);
        }
        const float d = (max - min) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        b[i].d = f2h(d);
        b[i].m = f2h(min);
        for (int j = 0; j < kQK / 2; ++j) {
            const uint8_t q0 = std::min<int8_t>(15, static_cast<int8_t>((x[j] - min) * id + 0.5f));
            const uint8_t q1 = std::min<int8_t>(15, static_cast<int8_t>((x[j + kQK / 2] - min) * id + 0.5f));
            b[i].qs[j] = q0 | (q1 << 4);
        }
    }
}

void dequant_q5_0(const BlockQ5_0* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = h2f(b[i].d);
        uint32_t qh;
        std::memcpy(&qh, b[i].qh, sizeof qh);
        for (int j = 0; j < kQK / 2; ++j) {
            const int h0 = ((qh >> j) << 4) & 0x10;
            const int h1 = (qh >> (j + 12)) & 0x10;
            y[j] = (((b[i].qs[j] & 0x0F) | h0) - 16) * d;
            y[j + kQK / 2] = (((b[i].qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

void quant_q5_0(const float* x, BlockQ5_0* b, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < kQK; ++j) {
            if (amax < std::fabs(x[j])) {
                amax = std::fabs(x[j]);
                max = x[j];
            }
        }
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        b[i].d = f2h(d);
        uint32_t qh = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            const uint8_t q0 = std::min<int8_t>(31, static_cast<int8_t>(x[j] * id + 16.5f));
            const uint8_t q1 = std::min<int8_t>(31, static_cast<int8_t>(x[j + kQK / 2] * id + 16.5f));
            b[i].qs[j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
            qh |= ((q0 & 0x10u) >> 4) << j;
            qh |= ((q1 & 0x10u) >> 4) << (j + kQK / 2);
        }
        std::memcpy(b[i].qh, &qh, sizeof qh);
    }
}

void dequant_q5_1(const BlockQ5_1* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = h2f(b[i].d), m = h2f(b[i].m);
        uint32_t qh;
        std::memcpy(&qh, b[i].qh, sizeof qh);
        for (int j = 0; j < kQK / 2; ++j) {
            const int h0 = ((qh >> j) << 4) & 0x10;
            const int h1 = (qh >> (j + 12)) & 0x10;
            y[j] = ((b[i].qs[j] & 0x0F) | h0) * d + m;
            y[j + kQK / 2] = ((b[i].qs[j] >> 4) | h1) * d + m;
        }
    }
}

void quant_q5_1(const float* x, BlockQ5_1* b, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < kQK; ++j) {
            min = std::min(min, x[j]);
            max = std::max(max, x[j]);
        }
        const float d = (max - min) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        b[i].d = f2h(d);
        b[i].m = f2h(min);
        uint32_t qh = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            const uint8_t q0 = static_cast<uint8_t>((x[j] - min) * id + 0.5f);
            const uint8_t q1 = static_cast<uint8_t>((x[j + kQK / 2] - min) * id + 0.5f);
            b[i].qs[j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
            qh |= ((q0 & 0x10u) >> 4) << j;
            qh |= ((q1 & 0x10u) >> 4) << (j + kQK / 2);
        }
        std::memcpy(b[i].qh, &qh, sizeof qh);
    }
}

void dequant_q8_0(const BlockQ8_0* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = h2f(b[i].d);
        for (int j = 0; j < kQK; ++j) y[j] = b[i].qs[j] * d;
    }
}

void quant_q8_0(const float* x, BlockQ8_0* b, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK) {
        float amax = 0.0f;
        for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        b[i].d = f2h(d);
        for (int j = 0; j < kQK; ++j) b[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
    }
}

void dequant_mxfp4(const BlockMXFP4* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = e8m0_to_fp32_half(b[i].e);
        for (int j = 0; j < kQK / 2; ++j) {
            y[j] = kMxfp4Values[b[i].qs[j] & 0x0F] * d;
            y[j + kQK / 2] = kMxfp4Values[b[i].qs[j] >> 4] * d;
        }
    }
}

uint8_t best_index_mxfp4(float x, float e) {
    int best = 0;
    float best_err = std::fabs(kMxfp4Values[0] * e - x);
    for (int i = 1; i < 16; ++i) {
        const float err = std::fabs(kMxfp4Values[i] * e - x);
        if (err < best_err) {
            best = i;
            best_err = err;
        }
    }
    return static_cast<uint8_t>(best);
}

void quant_mxfp4(const float* x, BlockMXFP4* b, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK) {
        float amax = 0.0f;
        for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
        const uint8_t e = amax > 0.0f ? static_cast<uint8_t>(std::floor(std::log2(amax)) - 2 + 127) : 0;
        const float d = e8m0_to_fp32_half(e);
        b[i].e = e;
        for (int j = 0; j < kQK / 2; ++j) {
            b[i].qs[j] = best_index_mxfp4(x[j], d) | (best_index_mxfp4(x[j + kQK / 2], d) << 4);
        }
    }
}

// ---- K-quant helpers (ggml's scale searches) -----------------------------------------------------------

float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        std::memset(L, 0, n);
        return 0.f;
    }
    float iscale = -nmax / max;
    if (rmse_type == 0) {
        for (int i = 0; i < n; ++i) L[i] = nmax + std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        return 1 / iscale;
    }
    auto weight = [&](int i) {
        switch (rmse_type) {
            case 1:
                return x[i] * x[i];
            case 2:
                return 1.0f;
            case 3:
                return std::fabs(x[i]);
            default:
                return std::sqrt(std::fabs(x[i]));
        }
    };
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = l + nmax;
        const float w = weight(i);
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            const float w = weight(i);
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) L[i] = nmax + std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        std::memset(L, 0, n);
        return 0.f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                const int new_l = std::clamp(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] += nmax;
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, uint8_t* Laux,
                       float rmin, float rdelta, int nstep, bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        min = std::min(min, x[i]);
        max = std::max(max, x[i]);
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        std::memset(L, 0, n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        L[i] = static_cast<uint8_t>(std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            const int l = std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = static_cast<uint8_t>(l);
            const float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? std::fabs(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                std::memcpy(L, Laux, n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

// ---- K-quants -----------------------------------------------------------------------------------------

void dequant_q2_k(const BlockQ2_K* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(b[i].d), min = h2f(b[i].dmin);
        const uint8_t* q = b[i].qs;
        int is = 0;
        for (int n = 0; n < kQK_K; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; ++j) {
                for (int half = 0; half < 2; ++half) {
                    const uint8_t sc = b[i].scales[is++];
                    const float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                    for (int l = 0; l < 16; ++l) *y++ = dl * ((q[l + 16 * half] >> shift) & 3) - ml;
                }
                shift += 2;
            }
            q += 32;
        }
    }
}

void quant_q2_k(const float* x, BlockQ2_K* b, int64_t nb) {
    uint8_t L[kQK_K], Laux[16];
    float weights[16], mins[kQK_K / 16], scales[kQK_K / 16];
    const float q4scale = 15.f;
    for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < kQK_K / 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
            max_scale = std::max(max_scale, scales[j]);
            max_min = std::max(max_min, mins[j]);
        }
        if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < kQK_K / 16; ++j) b[i].scales[j] = nearest_int(iscale * scales[j]);
            b[i].d = f2h(max_scale / q4scale);
        } else {
            std::memset(b[i].scales, 0, sizeof b[i].scales);
            b[i].d = f2h(0.f);
        }
        if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < kQK_K / 16; ++j) b[i].scales[j] |= nearest_int(iscale * mins[j]) << 4;
            b[i].dmin = f2h(max_min / q4scale);
        } else {
            b[i].dmin = f2h(0.f);
        }
        for (int j = 0; j < kQK_K / 16; ++j) {
            const float d = h2f(b[i].d) * (b[i].scales[j] & 0xF);
            if (!d) continue;
            const float dm = h2f(b[i].dmin) * (b[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = std::clamp(nearest_int((x[16 * j + ii] + dm) / d), 0, 3);
        }
        for (int j = 0; j < kQK_K; j += 128) {
            for (int l = 0; l < 32; ++l) {
                b[i].qs[j / 4 + l] = L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6);
            }
        }
    }
}

void unpack_q3_k_scales(const uint8_t* packed, int8_t* scales) {
    constexpr uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    uint32_t aux[4];
    std::memcpy(aux, packed, kKScaleBytes);
    const uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    std::memcpy(scales, aux, 16);
}

void dequant_q3_k(const BlockQ3_K* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d_all = h2f(b[i].d);
        int8_t scales[16];
        unpack_q3_k_scales(b[i].scales, scales);
        const uint8_t* q = b[i].qs;
        const uint8_t* hm = b[i].hmask;
        uint8_t m = 1;
        int is = 0;
        for (int n = 0; n < kQK_K; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; ++j) {
                for (int half = 0; half < 2; ++half) {
                    const float dl = d_all * (scales[is++] - 32);
                    for (int l = 16 * half; l < 16 * half + 16; ++l) {
                        *y++ = dl * (static_cast<int8_t>((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
                    }
                }
                shift += 2;
                m <<= 1;
            }
            q += 32;
        }
    }
}

void quant_q3_k(const float* x, BlockQ3_K* b, int64_t nb) {
    int8_t L[kQK_K];
    float scales[kQK_K / 16];
    for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < kQK_K / 16; ++j) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            const float scale = std::fabs(scales[j]);
            if (scale > amax) {
                amax = scale;
                max_scale = scales[j];
            }
        }
        std::memset(b[i].scales, 0, sizeof b[i].scales);
        if (max_scale) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < kQK_K / 16; ++j) {
                int l = std::clamp(nearest_int(iscale * scales[j]), -32, 31) + 32;
                if (j < 8) {
                    b[i].scales[j] = l & 0xF;
                } else {
                    b[i].scales[j - 8] |= (l & 0xF) << 4;
                }
                l >>= 4;
                b[i].scales[j % 4 + 8] |= l << (2 * (j / 4));
            }
            b[i].d = f2h(1 / iscale);
        } else {
            b[i].d = f2h(0.f);
        }
        for (int j = 0; j < kQK_K / 16; ++j) {
            int sc = j < 8 ? b[i].scales[j] & 0xF : b[i].scales[j - 8] >> 4;
            sc = (sc | (((b[i].scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
            const float d = h2f(b[i].d) * sc;
            if (!d) continue;
            for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = std::clamp(nearest_int(x[16 * j + ii] / d), -4, 3) + 4;
        }
        std::memset(b[i].hmask, 0, sizeof b[i].hmask);
        int m = 0;
        uint8_t hm = 1;
        for (int j = 0; j < kQK_K; ++j) {
            if (L[j] > 3) {
                b[i].hmask[m] |= hm;
                L[j] -= 4;
            }
            if (++m == kQK_K / 8) {
                m = 0;
                hm <<= 1;
            }
        }
        for (int j = 0; j < kQK_K; j += 128) {
            for (int l = 0; l < 32; ++l) {
                b[i].qs[j / 4 + l] = L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6);
            }
        }
    }
}

void dequant_q4_k(const BlockQ4_K* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(b[i].d), min = h2f(b[i].dmin);
        const uint8_t* q = b[i].qs;
        for (int j = 0, is = 0; j < kQK_K; j += 64, is += 2, q += 32) {
            uint8_t sc, m;
            get_scale_min_k4(is, b[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            get_scale_min_k4(is + 1, b[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

// Shared by Q4_K and Q5_K: 8 sub-blocks of 32 with 6-bit scales/mins; fills L with levels in [0, nmax].
void quant_k_sub32(const float* x, int nmax, float rmin, int nstep, uint8_t* scales_out, uint16_t* d_out,
                   uint16_t* dmin_out, uint8_t* L) {
    uint8_t Laux[32];
    float weights[32], mins[kQK_K / 32], scales[kQK_K / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < kQK_K / 32; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = std::sqrt(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
        scales[j] =
            make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, false);
        max_scale = std::max(max_scale, scales[j]);
        max_min = std::max(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < kQK_K / 32; ++j) {
        const uint8_t ls = std::min(63, nearest_int(inv_scale * scales[j]));
        const uint8_t lm = std::min(63, nearest_int(inv_min * mins[j]));
        if (j < 4) {
            scales_out[j] = ls;
            scales_out[j + 4] = lm;
        } else {
            scales_out[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            scales_out[j - 4] |= ((ls >> 4) << 6);
            scales_out[j - 0] |= ((lm >> 4) << 6);
        }
    }
    *d_out = f2h(max_scale / 63.f);
    *dmin_out = f2h(max_min / 63.f);
    for (int j = 0; j < kQK_K / 32; ++j) {
        uint8_t sc, m;
        get_scale_min_k4(j, scales_out, &sc, &m);
        const float d = h2f(*d_out) * sc;
        if (!d) continue;
        const float dm = h2f(*dmin_out) * m;
        for (int ii = 0; ii < 32; ++ii) L[32 * j + ii] = std::clamp(nearest_int((x[32 * j + ii] + dm) / d), 0, nmax);
    }
}

void quant_q4_k(const float* x, BlockQ4_K* b, int64_t nb) {
    uint8_t L[kQK_K];
    for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
        quant_k_sub32(x, 15, -1.f, 20, b[i].scales, &b[i].d, &b[i].dmin, L);
        uint8_t* q = b[i].qs;
        for (int j = 0; j < kQK_K; j += 64, q += 32) {
            for (int l = 0; l < 32; ++l) q[l] = L[j + l] | (L[j + l + 32] << 4);
        }
    }
}

void dequant_q5_k(const BlockQ5_K* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(b[i].d), min = h2f(b[i].dmin);
        const uint8_t* ql = b[i].qs;
        const uint8_t* qh = b[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0, is = 0; j < kQK_K; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            get_scale_min_k4(is, b[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            get_scale_min_k4(is + 1, b[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

void quant_q5_k(const float* x, BlockQ5_K* b, int64_t nb) {
    uint8_t L[kQK_K];
    for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
        quant_k_sub32(x, 31, -0.5f, 15, b[i].scales, &b[i].d, &b[i].dmin, L);
        uint8_t* qh = b[i].qh;
        uint8_t* ql = b[i].qs;
        std::memset(qh, 0, kQK_K / 8);
        uint8_t m1 = 1, m2 = 2;
        for (int n = 0; n < kQK_K; n += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
            for (int j = 0; j < 32; ++j) {
                int l1 = L[n + j];
                if (l1 > 15) {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                int l2 = L[n + j + 32];
                if (l2 > 15) {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[j] = l1 | (l2 << 4);
            }
        }
    }
}

void dequant_q6_k(const BlockQ6_K* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = h2f(b[i].d);
        const uint8_t* ql = b[i].ql;
        const uint8_t* qh = b[i].qh;
        const int8_t* sc = b[i].scales;
        for (int n = 0; n < kQK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int q1 = static_cast<int8_t>((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = static_cast<int8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = static_cast<int8_t>((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = static_cast<int8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

void quant_q6_k(const float* x, BlockQ6_K* b, int64_t nb) {
    int8_t L[kQK_K];
    float scales[kQK_K / 16];
    for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < kQK_K / 16; ++ib) {
            scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1);
            const float abs_scale = std::fabs(scales[ib]);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < kGroupMaxEps) {
            std::memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        const float iscale = -128.f / max_scale;
        b[i].d = f2h(1 / iscale);
        for (int ib = 0; ib < kQK_K / 16; ++ib) b[i].scales[ib] = std::min(127, nearest_int(iscale * scales[ib]));
        for (int j = 0; j < kQK_K / 16; ++j) {
            const float d = h2f(b[i].d) * b[i].scales[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = std::clamp(nearest_int(x[16 * j + ii] / d), -32, 31) + 32;
        }
        uint8_t* ql = b[i].ql;
        uint8_t* qh = b[i].qh;
        for (int j = 0; j < kQK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; ++l) {
                const uint8_t q1 = L[j + l + 0] & 0xF, q2 = L[j + l + 32] & 0xF;
                const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                ql[l + 0] = q1 | (q3 << 4);
                ql[l + 32] = q2 | (q4 << 4);
                qh[l] = (L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                        ((L[j + l + 96] >> 4) << 6);
            }
        }
    }
}

void dequant_q8_k(const BlockQ8_K* b, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
        for (int j = 0; j < kQK_K; ++j) y[j] = b[i].d * b[i].qs[j];
    }
}

void quant_q8_k(const float* x, BlockQ8_K* b, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < kQK_K; ++j) {
            const float ax = std::fabs(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (!amax) {
            std::memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < kQK_K; ++j) b[i].qs[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[j])));
        for (int j = 0; j < kQK_K / 16; ++j) {
            int sum = 0;
            for (int ii = 0; ii < 16; ++ii) sum += b[i].qs[j * 16 + ii];
            b[i].bsums[j] = static_cast<int16_t>(sum);
        }
        b[i].d = 1 / iscale;
    }
}

int64_t whole_blocks(DType type, int64_t n, const char* what) {
    const auto& t = dtype_traits(type);
    MOERIG_CHECK(n >= 0 && n % t.block_elems == 0, ConfigError,
                 "{}: {} values of {} are not a whole number of {}-value blocks", what, n, t.name, t.block_elems);
    return n / t.block_elems;
}

}  // namespace

float fp16_to_fp32(uint16_t h) {
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t mant = h & 0x3FF;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000 | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {
        // Subnormal: normalise the mantissa.
        exp = 113;
        while (!(mant & 0x400)) {
            mant <<= 1;
            --exp;
        }
        bits = sign | (exp << 23) | ((mant & 0x3FF) << 13);
    }
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
#endif
}

uint16_t fp32_to_fp16(float f) {
#if defined(__F16C__)
    return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
#else
    uint32_t x;
    std::memcpy(&x, &f, sizeof x);
    const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
    const uint32_t ax = x & 0x7FFFFFFF;
    if (ax > 0x7F800000) return sign | 0x7E00 | static_cast<uint16_t>((ax >> 13) & 0x3FF);  // NaN
    if (ax >= 0x477FF000) return sign | 0x7C00;                                             // rounds to >= 65520: Inf
    if (ax < 0x38800000) {                 // below the smallest normal half: subnormal or zero
        if (ax < 0x33000000) return sign;  // < 2^-25 rounds to zero
        const uint32_t e = ax >> 23;
        const uint32_t m = (ax & 0x7FFFFF) | 0x800000;
        const uint32_t shift = 126 - e;  // bits dropped to reach a 2^-24 unit
        uint32_t half = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1);
        const uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) ++half;
        return sign | static_cast<uint16_t>(half);
    }
    uint32_t half = ((ax >> 13) - (112u << 10));
    const uint32_t rem = ax & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) ++half;
    return sign | static_cast<uint16_t>(half);
#endif
}

uint16_t fp32_to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((u >> 16) | 64);  // quiet NaN
    return static_cast<uint16_t>((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}

float e8m0_to_fp32_half(uint8_t e) {
    const uint32_t bits = e < 2 ? 0x00200000u << e : static_cast<uint32_t>(e - 1) << 23;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

bool can_dequantize(DType type) {
    switch (type) {
        case DType::F32:
        case DType::F16:
        case DType::BF16:
        case DType::Q4_0:
        case DType::Q4_1:
        case DType::Q5_0:
        case DType::Q5_1:
        case DType::Q8_0:
        case DType::Q8_K:
        case DType::Q2_K:
        case DType::Q3_K:
        case DType::Q4_K:
        case DType::Q5_K:
        case DType::Q6_K:
        case DType::MXFP4:
            return true;
        default:
            return false;
    }
}

bool can_quantize(DType type) {
    return can_dequantize(type);
}

size_t row_bytes(DType type, int64_t n) {
    return static_cast<size_t>(dtype_bytes(type, static_cast<uint64_t>(n)));
}

DType activation_type(DType weight) {
    switch (weight) {
        case DType::Q4_0:
        case DType::Q4_1:
        case DType::Q5_0:
        case DType::Q5_1:
        case DType::Q8_0:
        case DType::MXFP4:
            return DType::Q8_0;
        case DType::Q2_K:
        case DType::Q3_K:
        case DType::Q4_K:
        case DType::Q5_K:
        case DType::Q6_K:
        case DType::Q8_K:
            return DType::Q8_K;
        case DType::F16:
            return DType::F16;  // ggml-cpu: vec_dot_type of F16 is F16 (x rounded to half, F32 sums)
        case DType::BF16:
            return DType::BF16;  // and of BF16 is BF16
        default:
            return DType::F32;
    }
}

void dequantize_row(DType type, const void* src, float* dst, int64_t n) {
    const int64_t nb = whole_blocks(type, n, "dequantize_row");
    switch (type) {
        case DType::F32:
            std::memcpy(dst, src, n * sizeof(float));
            return;
        case DType::F16: {
            const auto* h = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(h[i]);
            return;
        }
        case DType::BF16: {
            const auto* h = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(h[i]);
            return;
        }
        case DType::Q4_0:
            return dequant_q4_0(static_cast<const BlockQ4_0*>(src), dst, nb);
        case DType::Q4_1:
            return dequant_q4_1(static_cast<const BlockQ4_1*>(src), dst, nb);
        case DType::Q5_0:
            return dequant_q5_0(static_cast<const BlockQ5_0*>(src), dst, nb);
        case DType::Q5_1:
            return dequant_q5_1(static_cast<const BlockQ5_1*>(src), dst, nb);
        case DType::Q8_0:
            return dequant_q8_0(static_cast<const BlockQ8_0*>(src), dst, nb);
        case DType::Q8_K:
            return dequant_q8_k(static_cast<const BlockQ8_K*>(src), dst, nb);
        case DType::Q2_K:
            return dequant_q2_k(static_cast<const BlockQ2_K*>(src), dst, nb);
        case DType::Q3_K:
            return dequant_q3_k(static_cast<const BlockQ3_K*>(src), dst, nb);
        case DType::Q4_K:
            return dequant_q4_k(static_cast<const BlockQ4_K*>(src), dst, nb);
        case DType::Q5_K:
            return dequant_q5_k(static_cast<const BlockQ5_K*>(src), dst, nb);
        case DType::Q6_K:
            return dequant_q6_k(static_cast<const BlockQ6_K*>(src), dst, nb);
        case DType::MXFP4:
            return dequant_mxfp4(static_cast<const BlockMXFP4*>(src), dst, nb);
        default:
            MOERIG_THROW(UnsupportedError, "dequantize_row: type {} is not supported", dtype_name(type));
    }
}

void quantize_row(DType type, const float* src, void* dst, int64_t n) {
    const int64_t nb = whole_blocks(type, n, "quantize_row");
    switch (type) {
        case DType::F32:
            std::memcpy(dst, src, n * sizeof(float));
            return;
        case DType::F16: {
            auto* h = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_fp16(src[i]);
            return;
        }
        case DType::BF16: {
            auto* h = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_bf16(src[i]);
            return;
        }
        case DType::Q4_0:
            return quant_q4_0(src, static_cast<BlockQ4_0*>(dst), nb);
        case DType::Q4_1:
            return quant_q4_1(src, static_cast<BlockQ4_1*>(dst), nb);
        case DType::Q5_0:
            return quant_q5_0(src, static_cast<BlockQ5_0*>(dst), nb);
        case DType::Q5_1:
            return quant_q5_1(src, static_cast<BlockQ5_1*>(dst), nb);
        case DType::Q8_0:
            return quant_q8_0(src, static_cast<BlockQ8_0*>(dst), nb);
        case DType::Q8_K:
            return quant_q8_k(src, static_cast<BlockQ8_K*>(dst), nb);
        case DType::Q2_K:
            return quant_q2_k(src, static_cast<BlockQ2_K*>(dst), nb);
        case DType::Q3_K:
            return quant_q3_k(src, static_cast<BlockQ3_K*>(dst), nb);
        case DType::Q4_K:
            return quant_q4_k(src, static_cast<BlockQ4_K*>(dst), nb);
        case DType::Q5_K:
            return quant_q5_k(src, static_cast<BlockQ5_K*>(dst), nb);
        case DType::Q6_K:
            return quant_q6_k(src, static_cast<BlockQ6_K*>(dst), nb);
        case DType::MXFP4:
            return quant_mxfp4(src, static_cast<BlockMXFP4*>(dst), nb);
        default:
            MOERIG_THROW(UnsupportedError, "quantize_row: type {} is not supported", dtype_name(type));
    }
}

}  // namespace moerig::kernels
