// The K-quant DP4A block dot products of kernels/kquant_dp4a.h, run on the host with the emulated dp4a: the same
// code the CUDA GEMV runs per lane, checked against the CPU reference (dequantize_row weights times the
// dequantised int8 activations, summed in double) over quantised and random-byte blocks with extreme scales, and
// against the float dot product within the activations' quantisation error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/kquant_dp4a.h"
#include "kernels/quant.h"
#include "kernels/quant_blocks.h"
#include "tests/kernels/kernel_test_util.h"

namespace moerig::kernels {
namespace {

/// Activations of some super-blocks quantised as the GPU does (ggml's Q8_0 quantiser per 32 values), split into
/// the int8 values (16-byte aligned), the float scales and the integer sums.
struct Activations {
    std::vector<int32_t> storage;  // int8 values, as int32 for alignment
    std::vector<float> d;
    std::vector<int> sums;
    std::vector<float> dequantised;
    const int8_t* q() const { return reinterpret_cast<const int8_t*>(storage.data()); }

    explicit Activations(const std::vector<float>& x) : storage(x.size() / 4), d(x.size() / 32), sums(x.size() / 32) {
        const auto n = static_cast<int64_t>(x.size());
        std::vector<BlockQ8_0> blocks(x.size() / 32);
        quantize_row(DType::Q8_0, x.data(), blocks.data(), n);
        auto* q8 = reinterpret_cast<int8_t*>(storage.data());
        dequantised.resize(x.size());
        for (size_t b = 0; b < blocks.size(); ++b) {
            d[b] = fp16_to_fp32(blocks[b].d);
            int s = 0;
            for (int i = 0; i < 32; ++i) {
                q8[32 * b + i] = blocks[b].qs[i];
                s += blocks[b].qs[i];
                dequantised[32 * b + i] = static_cast<float>(blocks[b].qs[i]) * d[b];
            }
            sums[b] = s;
        }
    }
};

int block_bytes(DType type) {
    return static_cast<int>(dtype_bytes(type, kQK_K));
}

/// Per element, the magnitudes the integer path adds up: |d * scale * q| + |dmin * min| (the block dequantised
/// with dmin zeroed, then with d zeroed), so that cancellation between the scale and min terms does not make a
/// tolerance meaningless. Q6_K has no min: |w|.
std::vector<float> term_magnitudes(DType type, const uint8_t* blk) {
    std::vector<float> mag(kQK_K);
    std::vector<float> part(kQK_K);
    std::vector<uint8_t> copy(blk, blk + block_bytes(type));
    if (type == DType::Q6_K) {
        dequantize_row(type, copy.data(), mag.data(), kQK_K);
        for (float& m : mag) m = std::fabs(m);
        return mag;
    }
    copy[2] = copy[3] = 0;  // dmin = 0
    dequantize_row(type, copy.data(), mag.data(), kQK_K);
    copy.assign(blk, blk + block_bytes(type));
    copy[0] = copy[1] = 0;  // d = 0
    dequantize_row(type, copy.data(), part.data(), kQK_K);
    for (int i = 0; i < kQK_K; ++i) mag[i] = std::fabs(mag[i]) + std::fabs(part[i]);
    return mag;
}

struct BlockErrors {
    double max_rel_int8 = 0;   // |got - ref(int8 activations)| / sum |terms| |x|
    double max_rel_float = 0;  // |got - ref(float activations)| / the quantisation bound
};

/// Checks every super-block of `weights` against both references; returns the largest relative errors.
BlockErrors check_blocks(DType type, const std::vector<uint8_t>& weights, const std::vector<float>& x) {
    const int bb = block_bytes(type);
    const int num_blocks = static_cast<int>(weights.size()) / bb;
    EXPECT_EQ(x.size(), static_cast<size_t>(num_blocks) * kQK_K);
    const Activations act(x);
    BlockErrors e;
    std::vector<float> w(kQK_K);
    for (int b = 0; b < num_blocks; ++b) {
        const uint8_t* blk = weights.data() + static_cast<size_t>(b) * bb;
        const size_t x0 = static_cast<size_t>(b) * kQK_K;
        const float got = kq::block_dot(type, blk, act.q() + x0, act.d.data() + x0 / 32, act.sums.data() + x0 / 32);
        dequantize_row(type, blk, w.data(), kQK_K);
        const auto mag = term_magnitudes(type, blk);
        double ref_q = 0, ref_f = 0, scale = 0, bound = 0;
        for (int i = 0; i < kQK_K; ++i) {
            ref_q += static_cast<double>(w[i]) * act.dequantised[x0 + i];
            ref_f += static_cast<double>(w[i]) * x[x0 + i];
            scale += static_cast<double>(mag[i]) * std::fabs(act.dequantised[x0 + i]);
            // |x - q d16| <= d / 2 (rounding) + 127 |d - d16| (fp16 scale), d16 within 2^-11 relative of d.
            bound += static_cast<double>(mag[i]) * act.d[(x0 + i) / 32] * (0.5 + 127.0 / 2048.0) * 1.001;
        }
        EXPECT_TRUE(std::isfinite(got)) << dtype_name(type) << " block " << b;
        const double err_q = std::fabs(got - ref_q);
        const double rel_q = scale > 0 ? err_q / scale : err_q;
        e.max_rel_int8 = std::max(e.max_rel_int8, rel_q);
        EXPECT_LE(rel_q, 1e-6) << dtype_name(type) << " block " << b << ": got " << got << ", int8 reference " << ref_q
                               << ", scale " << scale;
        const double err_f = std::fabs(got - ref_f);
        const double tol_f = bound + 1e-6 * scale;
        e.max_rel_float = std::max(e.max_rel_float, tol_f > 0 ? err_f / tol_f : err_f);
        EXPECT_LE(err_f, tol_f) << dtype_name(type) << " block " << b << ": got " << got << ", float reference "
                                << ref_f;
    }
    return e;
}

/// Activations with per-32 scales spread over many orders of magnitude (fp16 scales stay finite), some
/// all-zero blocks and blocks whose largest value is exactly +-127 quanta.
std::vector<float> extreme_activations(int num_blocks, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> log_scale(-12.0f, 12.0f);
    std::vector<float> x(static_cast<size_t>(num_blocks) * kQK_K);
    for (size_t b = 0; b < x.size() / 32; ++b) {
        const float s = std::exp(log_scale(rng));
        const int kind = static_cast<int>(rng() % 8);
        for (int i = 0; i < 32; ++i) x[32 * b + i] = kind == 0 ? 0.0f : normal(rng) * s;
        if (kind == 1) {  // saturated: every value at +-amax
            for (int i = 0; i < 32; ++i) x[32 * b + i] = (i % 3 == 0 ? -1.0f : 1.0f) * s;
        }
    }
    return x;
}

class KQuantDp4aTest : public ::testing::TestWithParam<DType> {};

TEST_P(KQuantDp4aTest, QuantisedBlocksMatchTheDequantisedReference) {
    const DType type = GetParam();
    constexpr int kBlocks = 64;
    BlockErrors worst;
    for (uint32_t seed = 1; seed <= 4; ++seed) {
        const auto values = testing::random_values(kBlocks * kQK_K, seed, seed == 4 ? 1e-3f : 1.0f);
        std::vector<uint8_t> w(static_cast<size_t>(kBlocks) * block_bytes(type));
        quantize_row(type, values.data(), w.data(), kBlocks * kQK_K);
        const auto e = check_blocks(type, w, testing::random_values(kBlocks * kQK_K, 100 + seed));
        worst.max_rel_int8 = std::max(worst.max_rel_int8, e.max_rel_int8);
        worst.max_rel_float = std::max(worst.max_rel_float, e.max_rel_float);
    }
    RecordProperty("max_rel_err_int8_ref", std::to_string(worst.max_rel_int8));
    std::printf(
        "%s quantised blocks: max relative error vs int8 reference %.3g, vs float reference %.3g of the "
        "quantisation bound\n",
        std::string(dtype_name(type)).c_str(), worst.max_rel_int8, worst.max_rel_float);
}

TEST_P(KQuantDp4aTest, RandomBytesWithExtremeScalesMatchTheDequantisedReference) {
    const DType type = GetParam();
    constexpr int kBlocks = 512;
    const int bb = block_bytes(type);
    std::mt19937 rng(42);
    std::vector<uint8_t> w(static_cast<size_t>(kBlocks) * bb);
    for (auto& byte : w) byte = static_cast<uint8_t>(rng());
    // fp16 super-block scales: largest finite, smallest subnormal and normal, zero, negative, and ordinary ones.
    const uint16_t scales[] = {0x7BFF, 0x0001, 0x0400, 0x0000, 0xC100, 0x3C00, 0x2E66, 0x5640, 0xFBFF};
    const int num_scales = static_cast<int>(sizeof scales / sizeof scales[0]);
    for (int b = 0; b < kBlocks; ++b) {
        uint8_t* blk = w.data() + static_cast<size_t>(b) * bb;
        const uint16_t d = scales[b % num_scales], dmin = scales[(b / num_scales) % num_scales];
        if (type == DType::Q6_K) {
            std::memcpy(blk + 208, &d, 2);
        } else {
            std::memcpy(blk, &d, 2);
            std::memcpy(blk + 2, &dmin, 2);
        }
        if (b % 7 == 0) {  // all 6-bit scales and mins at their maximum, or Q6_K scales at -128 and quants at 0
            if (type == DType::Q6_K) {
                std::memset(blk + 192, 0x80, 16);
                std::memset(blk, 0, 192);
            } else {
                std::memset(blk + 4, 0xFF, 12);
            }
        }
    }
    const auto e = check_blocks(type, w, extreme_activations(kBlocks, 7));
    std::printf(
        "%s random blocks, extreme scales: max relative error vs int8 reference %.3g, vs float reference "
        "%.3g of the quantisation bound\n",
        std::string(dtype_name(type)).c_str(), e.max_rel_int8, e.max_rel_float);
}

TEST_P(KQuantDp4aTest, PartsCoverEveryValueOnce) {
    // Activations that are zero except at one position pick out that position's dequantised weight: a part that
    // read a wrong or duplicated position would show here even where random data might average it out.
    const DType type = GetParam();
    const auto values = testing::random_values(kQK_K, 5);
    std::vector<uint8_t> w(static_cast<size_t>(block_bytes(type)));
    quantize_row(type, values.data(), w.data(), kQK_K);
    std::vector<float> deq(kQK_K);
    dequantize_row(type, w.data(), deq.data(), kQK_K);
    const auto mag = term_magnitudes(type, w.data());
    for (int pos = 0; pos < kQK_K; ++pos) {
        std::vector<float> x(kQK_K, 0.0f);
        x[static_cast<size_t>(pos)] = 1.0f;
        const Activations act(x);
        const float got = kq::block_dot(type, w.data(), act.q(), act.d.data(), act.sums.data());
        const double want = static_cast<double>(deq[static_cast<size_t>(pos)]) * act.dequantised[pos];
        const double tol = 1e-6 * mag[static_cast<size_t>(pos)] * std::fabs(act.dequantised[pos]) + 1e-12;
        ASSERT_NEAR(got, want, tol) << dtype_name(type) << " value " << pos;
    }
}

INSTANTIATE_TEST_SUITE_P(Types, KQuantDp4aTest, ::testing::Values(DType::Q4_K, DType::Q5_K, DType::Q6_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(KQuantDp4aHelpers, Dp4aEmulationMultipliesSignedBytes) {
    // bytes (low first): a = {1, -1, -128, 127}, b = {127, -128, -128, 2}
    const int a = static_cast<int>(0x7F80FF01u), b = static_cast<int>(0x0280807Fu);
    EXPECT_EQ(kq::dp4a(a, b, 5), 5 + 127 + 128 + 16384 + 254);
    EXPECT_EQ(kq::dp4a(0x01010101, static_cast<int>(0xFFFFFFFFu), 0), -4);
}

TEST(KQuantDp4aHelpers, Vsub4SubtractsPerByteWithoutBorrow) {
    EXPECT_EQ(kq::vsub4(0x3F201F00u, 0x20202020u), 0x1F00FFE0u);
    EXPECT_EQ(kq::vsub4(0x00000000u, 0x01010101u), 0xFFFFFFFFu);
}

TEST(KQuantDp4aHelpers, HalfToFloatMatchesTheCpuConversionForEveryBitPattern) {
    for (uint32_t h = 0; h < 65536; ++h) {
        const float got = kq::half_to_float(static_cast<uint16_t>(h));
        const float want = fp16_to_fp32(static_cast<uint16_t>(h));
        if (std::isnan(want)) {
            ASSERT_TRUE(std::isnan(got)) << std::hex << h;
        } else {
            uint32_t gb, wb;
            std::memcpy(&gb, &got, 4);
            std::memcpy(&wb, &want, 4);
            ASSERT_EQ(gb, wb) << std::hex << h;
        }
    }
}

}  // namespace
}  // namespace moerig::kernels
