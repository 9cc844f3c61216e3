// Quantisation blocks: fp16/bf16 conversions, hand-built blocks of every type decoding to known values,
// quantize -> dequantize error bounds per type, and errors for rows that are not whole blocks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/error.h"
#include "kernels/quant.h"
#include "tests/kernels/kernel_test_util.h"

using namespace moerig;
using namespace moerig::kernels;
using moerig::testing::nmse;
using moerig::testing::random_values;

namespace {

const DType kAllTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                           DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q8_K, DType::Q2_K,
                           DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::MXFP4};

// Upper bounds of quantize->dequantize NMSE on random_values(4096, seed 7): about 1.5x what ggml's reference
// quantizers reach on that data (test_quant_fixtures checks that the bytes equal ggml's), so a regression in a
// scale search shows up. They follow bits per weight: each extra bit divides a uniform quantiser's error
// (step^2 / 12) by ~4; 256-wide Q8_K pays for its outliers with a coarser step than 32-wide Q8_0.
double round_trip_bound(DType t) {
    switch (t) {
        case DType::F32:
            return 0.0;
        case DType::F16:
            return 7e-8;
        case DType::BF16:
            return 4e-6;
        case DType::Q8_0:
            return 1e-4;
        case DType::Q8_K:
            return 5e-4;
        case DType::Q6_K:
            return 8e-4;
        case DType::Q5_1:
        case DType::Q5_K:
            return 3e-3;
        case DType::Q5_0:
            return 6e-3;
        case DType::Q4_K:
            return 1.1e-2;
        case DType::Q4_1:
            return 1.2e-2;
        case DType::Q4_0:
            return 2.5e-2;
        case DType::MXFP4:
            return 3.2e-2;
        case DType::Q3_K:
            return 4.7e-2;
        case DType::Q2_K:
            return 1.6e-1;
        default:
            return 0.0;
    }
}

}  // namespace

TEST(Fp16, RoundTripsEveryFiniteHalfExactly) {
    for (uint32_t h = 0; h < 0x10000; ++h) {
        const float f = fp16_to_fp32(static_cast<uint16_t>(h));
        if (std::isnan(f)) continue;
        ASSERT_EQ(fp32_to_fp16(f), h) << "half bits " << h;
    }
}

TEST(Fp16, DecodesKnownValuesAndRoundsToNearestEven) {
    EXPECT_EQ(fp16_to_fp32(0x3C00), 1.0f);
    EXPECT_EQ(fp16_to_fp32(0xC000), -2.0f);
    EXPECT_EQ(fp16_to_fp32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
    EXPECT_EQ(fp16_to_fp32(0x7BFF), 65504.0f);
    EXPECT_TRUE(std::isinf(fp16_to_fp32(0x7C00)));
    EXPECT_TRUE(std::isnan(fp16_to_fp32(0x7E00)));
    // 1 + 2^-11 is halfway between 1 and the next half (1 + 2^-10): ties go to the even mantissa (1).
    EXPECT_EQ(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
    EXPECT_EQ(fp32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
    EXPECT_EQ(fp32_to_fp16(70000.0f), 0x7C00);
    EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
}

TEST(Bf16, RoundsToNearestEvenAndKeepsNaNQuiet) {
    EXPECT_EQ(bf16_to_fp32(0x3F80), 1.0f);
    EXPECT_EQ(fp32_to_bf16(1.0f), 0x3F80);
    // 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: goes to even (1).
    EXPECT_EQ(fp32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
    EXPECT_EQ(fp32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
    EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
    for (uint32_t h = 0; h < 0x10000; h += 7) {
        const float f = bf16_to_fp32(static_cast<uint16_t>(h));
        if (!std::isnan(f)) {
            ASSERT_EQ(fp32_to_bf16(f), h);
        }
    }
}

TEST(E8m0, IsHalfOfTwoToTheExponentMinus127) {
    EXPECT_EQ(e8m0_to_fp32_half(127), 0.5f);
    EXPECT_EQ(e8m0_to_fp32_half(130), 4.0f);
    EXPECT_EQ(e8m0_to_fp32_half(1), std::ldexp(1.0f, -127));
    EXPECT_EQ(e8m0_to_fp32_half(0), std::ldexp(1.0f, -128));
}

TEST(QuantBlocks, Q4_0BlockDecodesLowNibblesFirstThenHighNibbles) {
    BlockQ4_0 b{};
    b.d = fp32_to_fp16(0.5f);
    for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    float y[32];
    dequantize_row(DType::Q4_0, &b, y, 32);
    for (int j = 0; j < 16; ++j) {
        EXPECT_EQ(y[j], (j - 8) * 0.5f);
        EXPECT_EQ(y[j + 16], (15 - j - 8) * 0.5f);
    }
}

TEST(QuantBlocks, Q5_0TakesFifthBitsFromQhInElementOrder) {
    BlockQ5_0 b{};
    b.d = fp32_to_fp16(1.0f);
    const uint32_t qh = 0x80000001u;  // element 0 and element 31 get the high bit
    std::memcpy(b.qh, &qh, 4);
    float y[32];
    dequantize_row(DType::Q5_0, &b, y, 32);
    EXPECT_EQ(y[0], 0.0f);    // 16 - 16
    EXPECT_EQ(y[1], -16.0f);  // 0 - 16
    EXPECT_EQ(y[31], 0.0f);
    EXPECT_EQ(y[16], -16.0f);
}

TEST(QuantBlocks, Q4_KUsesSixBitScalesAndMinsOfEachSubBlock) {
    BlockQ4_K b{};
    b.d = fp32_to_fp16(1.0f);
    b.dmin = fp32_to_fp16(0.5f);
    // Sub-block 0: scale 3, min 2. Sub-block 5: scale 0x2A (low 4 bits in scales[9], top 2 in scales[1]),
    // min 0x31 (low 4 in scales[9] high nibble, top 2 in scales[5]).
    b.scales[0] = 3;
    b.scales[4] = 2;
    b.scales[9] = 0xA | (0x1 << 4);
    b.scales[1] = (0x2A >> 4) << 6;
    b.scales[5] = (0x31 >> 4) << 6;
    for (int l = 0; l < 128; ++l) b.qs[l] = 0x77;  // every quant 7
    std::vector<float> y(256);
    dequantize_row(DType::Q4_K, &b, y.data(), 256);
    EXPECT_EQ(y[0], 3 * 7 - 0.5f * 2);
    EXPECT_EQ(y[5 * 32 + 3], 0x2A * 7 - 0.5f * 0x31);
}

TEST(QuantBlocks, Q6_KCombinesLowAndHighBitsWithSignedScales) {
    BlockQ6_K b{};
    b.d = fp32_to_fp16(0.25f);
    for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<int8_t>(j - 8);
    b.ql[0] = 0xF5;  // element 0 low bits 5, element 64 low bits 15
    b.qh[0] = 0x31;  // element 0 high bits 1, element 32 high bits 0, element 64 high bits 3
    std::vector<float> y(256);
    dequantize_row(DType::Q6_K, &b, y.data(), 256);
    EXPECT_EQ(y[0], 0.25f * (0 - 8) * ((5 | (1 << 4)) - 32));
    EXPECT_EQ(y[64], 0.25f * (4 - 8) * ((15 | (3 << 4)) - 32));
    EXPECT_EQ(y[32], 0.25f * (2 - 8) * (0 - 32));
}

TEST(QuantBlocks, Mxfp4DecodesE2M1CodesWithSharedExponent) {
    BlockMXFP4 b{};
    b.e = 128;  // 2^(128-127) = 2; values are table/2 * 2
    b.qs[0] = 0x7 | (0xF << 4);
    b.qs[1] = 0x1 | (0x9 << 4);
    float y[32];
    dequantize_row(DType::MXFP4, &b, y, 32);
    EXPECT_EQ(y[0], 12.0f);
    EXPECT_EQ(y[16], -12.0f);
    EXPECT_EQ(y[1], 1.0f);
    EXPECT_EQ(y[17], -1.0f);
}

TEST(QuantRoundTrip, ErrorStaysWithinPerTypeBounds) {
    const int64_t n = 4096;
    const auto x = random_values(n, 7);
    for (DType t : kAllTypes) {
        std::vector<uint8_t> q(row_bytes(t, n));
        std::vector<float> y(n);
        quantize_row(t, x.data(), q.data(), n);
        dequantize_row(t, q.data(), y.data(), n);
        const double e = nmse(y, x);
        EXPECT_LE(e, round_trip_bound(t)) << dtype_name(t);
        if (t != DType::F32) {
            EXPECT_GT(e, 0.0) << dtype_name(t) << " should lose some precision";
        }
    }
}

TEST(QuantRoundTrip, ZeroAndConstantBlocksStayFinite) {
    const int64_t n = 512;
    std::vector<float> zeros(n, 0.0f), consts(n, 3.0f), negs(n, -0.25f);
    for (DType t : kAllTypes) {
        for (const auto* x : {&zeros, &consts, &negs}) {
            std::vector<uint8_t> q(row_bytes(t, n));
            std::vector<float> y(n);
            quantize_row(t, x->data(), q.data(), n);
            dequantize_row(t, q.data(), y.data(), n);
            for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(std::isfinite(y[i])) << dtype_name(t);
            if (x == &zeros) {
                EXPECT_EQ(nmse(y, *x), 0.0) << dtype_name(t);
            } else {
                EXPECT_LE(nmse(y, *x), round_trip_bound(t) + 1e-6) << dtype_name(t);
            }
        }
    }
}

TEST(QuantRows, RejectPartialBlocksAndUnsupportedTypes) {
    std::vector<float> x(40);
    std::vector<uint8_t> q(1024);
    EXPECT_THROW(quantize_row(DType::Q8_0, x.data(), q.data(), 40), ConfigError);
    EXPECT_THROW(dequantize_row(DType::Q4_K, q.data(), x.data(), 32), ConfigError);
    EXPECT_THROW(dequantize_row(DType::IQ2_XXS, q.data(), x.data(), 256), UnsupportedError);
    EXPECT_FALSE(can_dequantize(DType::IQ4_XS));
    EXPECT_TRUE(can_dequantize(DType::MXFP4));
}

TEST(QuantRows, ActivationTypeFollowsLlamaCpp) {
    EXPECT_EQ(activation_type(DType::Q4_K), DType::Q8_K);
    EXPECT_EQ(activation_type(DType::Q6_K), DType::Q8_K);
    EXPECT_EQ(activation_type(DType::Q8_0), DType::Q8_0);
    EXPECT_EQ(activation_type(DType::MXFP4), DType::Q8_0);
    EXPECT_EQ(activation_type(DType::F16), DType::F16);    // ggml-cpu vec_dot_type: x rounded to half
    EXPECT_EQ(activation_type(DType::BF16), DType::BF16);  // likewise to bfloat16
    EXPECT_EQ(activation_type(DType::F32), DType::F32);
}
