// Attention over the KV cache's storage forms: F16 rows (read by the fast path and the reference) against the F32
// reference, and a ring of slots (sliding-window layers) against the same keys in a linear cache.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "kernels/attention.h"
#include "kernels/error.h"
#include "kernels/quant.h"
#include "kernels/threadpool.h"
#include "tests/kernels/attention_cases.h"
#include "tests/kernels/kernel_test_util.h"

using moerig::kernels::attention;
using moerig::kernels::attention_ref;
using moerig::kernels::AttentionIo;
using moerig::kernels::AttentionParams;
using moerig::kernels::ThreadPool;
using moerig::testing::kAttentionCases;
using moerig::testing::make_attention_tensors;
using moerig::testing::nmse;

namespace {

std::vector<uint16_t> to_f16(const std::vector<float>& v) {
    std::vector<uint16_t> h(v.size());
    moerig::kernels::quantize_row(moerig::DType::F16, v.data(), h.data(), static_cast<int64_t>(v.size()));
    return h;
}

std::vector<float> run(const AttentionParams& p, AttentionIo io, size_t n, ThreadPool* pool) {
    std::vector<float> out(n, NAN);
    io.out = out.data();
    if (pool) {
        attention(p, io, *pool);
    } else {
        attention_ref(p, io);
    }
    return out;
}

}  // namespace

TEST(AttentionKv, F16CacheFastPathMatchesItsReferenceAndStaysCloseToTheF32Reference) {
    ThreadPool pool(3);
    double worst = 0;
    for (const auto& c : kAttentionCases) {
        auto t = make_attention_tensors(c);
        const size_t n = static_cast<size_t>(c.tokens * c.heads * c.v_dim);
        const std::vector<float> ref32 = run(t.p, t.io, n, nullptr);
        const std::vector<uint16_t> k16 = to_f16(t.k), v16 = to_f16(t.v);
        AttentionIo io16 = t.io;
        io16.k = io16.v = nullptr;
        io16.k_f16 = k16.data();
        io16.v_f16 = c.shared_kv ? k16.data() : v16.data();
        const std::vector<float> ref16 = run(t.p, io16, n, nullptr);
        const std::vector<float> fast16 = run(t.p, io16, n, &pool);
        // The F16 fast path computes what its reference does on the same rounded rows (float vs double sums).
        EXPECT_LE(nmse(fast16, ref16), 1e-10) << "heads " << c.heads << " kv_len " << c.kv_len;
        // Rounding K and V to half (11-bit significand) moves the output by ~2^-12 relative per value.
        const double e = nmse(fast16, ref32);
        EXPECT_LE(e, 1e-6) << "heads " << c.heads << " kv_len " << c.kv_len;
        EXPECT_GT(e, 0.0) << "an F16 cache that equals F32 was not rounded";
        worst = std::max(worst, e);
    }
    std::printf("F16 KV attention vs F32 reference: worst NMSE %.3g\n", worst);
}

TEST(AttentionKv, RingOfSlotsGivesTheLinearCachesOutputBitForBit) {
    // Positions [kv_len - ring, kv_len) of a linear cache copied to their slots j % ring; the slots of older
    // positions hold garbage that a window <= ring - tokens + 1 never reads.
    ThreadPool pool(2);
    for (const bool half : {false, true}) {
        for (const auto& c : kAttentionCases) {
            if (c.window == 0) continue;
            auto t = make_attention_tensors(c);
            const int64_t ring = c.window + c.tokens - 1;
            const int64_t k_row = t.io.k_token_stride, v_row = t.io.v_token_stride;
            std::vector<float> k_ring(static_cast<size_t>(ring * k_row), 1e30f);
            std::vector<float> v_ring(static_cast<size_t>(ring * v_row), -1e30f);
            for (int64_t j = c.kv_len - ring; j < c.kv_len; ++j) {
                std::copy_n(t.k.begin() + j * k_row, k_row, k_ring.begin() + (j % ring) * k_row);
                std::copy_n(t.io.v + j * v_row, v_row, v_ring.begin() + (j % ring) * v_row);
            }
            const size_t n = static_cast<size_t>(c.tokens * c.heads * c.v_dim);
            AttentionIo lin = t.io, rio = t.io;
            rio.k = k_ring.data();
            rio.v = v_ring.data();
            rio.kv_ring = ring;
            std::vector<uint16_t> k16, v16, kr16, vr16;
            if (half) {
                k16 = to_f16(t.k), v16 = to_f16(c.shared_kv ? t.k : t.v), kr16 = to_f16(k_ring), vr16 = to_f16(v_ring);
                lin.k = lin.v = rio.k = rio.v = nullptr;
                lin.k_f16 = k16.data(), lin.v_f16 = v16.data();
                rio.k_f16 = kr16.data(), rio.v_f16 = vr16.data();
            }
            EXPECT_EQ(run(t.p, rio, n, &pool), run(t.p, lin, n, &pool)) << "half " << half << " ring " << ring;
            EXPECT_EQ(run(t.p, rio, n, nullptr), run(t.p, lin, n, nullptr)) << "half " << half << " ring " << ring;
        }
    }
}

TEST(AttentionKv, RingNeedsASlidingWindowThatFitsAndF16NeedsBothRows) {
    std::vector<float> buf(256);
    std::vector<uint16_t> half(256);
    AttentionParams p;
    p.num_heads = p.num_kv_heads = 1;
    p.head_dim = 4;
    AttentionIo io{buf.data(), 4, 4, buf.data(), 4, 4, buf.data(), 4, 4, buf.data(), 4, 4, 1, 20, nullptr};
    io.kv_ring = 8;
    ThreadPool pool(1);
    EXPECT_THROW(attention(p, io, pool), moerig::ConfigError);  // no window: every position would be read
    p.sliding_window = 9;
    EXPECT_THROW(attention_ref(p, io), moerig::ConfigError);  // window larger than the ring
    p.sliding_window = 8;
    EXPECT_NO_THROW(attention(p, io, pool));
    io.k_f16 = half.data();
    EXPECT_THROW(attention(p, io, pool), moerig::ConfigError);
}
