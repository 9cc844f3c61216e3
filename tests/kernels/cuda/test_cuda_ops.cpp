// CUDA RMSNorm, SwiGLU (both forms), add, RoPE (normal, NeoX, YaRN, freq factors), argmax and the dispatcher's
// row permutations against the CPU references of kernels/ops.h and kernels/rope.h.
#include <cstring>
#include <tuple>

#include "kernels/cuda/argmax.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/permute.h"
#include "kernels/cuda/rms_norm.h"
#include "kernels/cuda/rope.h"
#include "kernels/ops.h"
#include "kernels/rope.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace moerig::kernels::cuda::test {
namespace {

TEST(CudaOps, RmsNormMatchesCpuWithAndWithoutWeight) {
    MOERIG_REQUIRE_GPU();
    for (auto [rows, n] : {std::tuple<int64_t, int64_t>{1, 4096}, {7, 33}, {3, 1000}}) {
        const auto x = random_floats(static_cast<size_t>(rows * n), 1, 3.0f);
        const auto w = random_floats(static_cast<size_t>(n), 2);
        DeviceArray<float> d_x(x), d_w(w), d_y(x.size());
        for (bool with_weight : {true, false}) {
            std::vector<float> ref(x.size());
            kernels::rms_norm_rows(x.data(), with_weight ? w.data() : nullptr, ref.data(), rows, n, 1e-6f);
            cuda::rms_norm_rows(d_x.get(), with_weight ? d_w.get() : nullptr, d_y.get(), rows, n, 1e-6f, nullptr);
            EXPECT_LT(nmse(ref, d_y.download()), 1e-12) << rows << "x" << n << " weight " << with_weight;
        }
    }
}

TEST(CudaOps, SwigluFormsAndAddMatchCpu) {
    MOERIG_REQUIRE_GPU();
    const int64_t n = 10007;
    const auto g = random_floats(n, 3, 4.0f), u = random_floats(n, 4, 4.0f);
    DeviceArray<float> d_g(g), d_u(u), d_y(n);
    std::vector<float> ref(n);
    kernels::swiglu(g.data(), u.data(), ref.data(), n);
    cuda::swiglu(d_g.get(), d_u.get(), d_y.get(), n, nullptr);
    EXPECT_LT(nmse(ref, d_y.download()), 1e-12);
    kernels::swiglu_oai(g.data(), u.data(), ref.data(), n, 1.702f, 7.0f);
    cuda::swiglu_oai(d_g.get(), d_u.get(), d_y.get(), n, 1.702f, 7.0f, nullptr);
    EXPECT_LT(nmse(ref, d_y.download()), 1e-12);
    kernels::add(g.data(), u.data(), ref.data(), n);
    cuda::add(d_g.get(), d_u.get(), d_y.get(), n, nullptr);
    EXPECT_EQ(ref, d_y.download());
}

struct RopeCase {
    const char* name;
    RopeParams p;
    int64_t head_dim;
    bool freq_factors;
};

TEST(CudaOps, RopeMatchesCpuInAllModes) {
    MOERIG_REQUIRE_GPU();
    RopeParams normal;
    normal.n_dims = 128;
    RopeParams neox_partial;
    neox_partial.n_dims = 64;
    neox_partial.neox = true;
    neox_partial.freq_base = 1e6f;
    RopeParams yarn;
    yarn.n_dims = 64;
    yarn.neox = true;
    yarn.freq_base = 150000.0f;
    yarn.freq_scale = 1.0f / 32.0f;
    yarn.ext_factor = 1.0f;
    yarn.attn_factor = 1.0f;
    yarn.n_ctx_orig = 4096;
    const RopeCase cases[] = {
        {"normal", normal, 128, false}, {"neox_partial", neox_partial, 96, true}, {"yarn", yarn, 64, false}};
    const int64_t num_tokens = 5, num_heads = 3;
    const std::vector<int32_t> positions = {0, 1, 17, 300, 4095};
    for (const auto& c : cases) {
        RopeParams p = c.p;
        const auto ff = random_floats(static_cast<size_t>(p.n_dims / 2), 9, 0.1f);
        std::vector<float> factors(ff.size());
        for (size_t i = 0; i < ff.size(); ++i) factors[i] = 1.0f + std::abs(ff[i]) * 4.0f;
        const int64_t token_stride = num_heads * c.head_dim;
        auto x = random_floats(static_cast<size_t>(num_tokens * token_stride), 7);
        DeviceArray<float> d_x(x);
        DeviceArray<int32_t> d_pos(positions);
        DeviceArray<float> d_ff(factors);
        p.freq_factors = c.freq_factors ? factors.data() : nullptr;
        kernels::rope(p, x.data(), num_tokens, num_heads, token_stride, c.head_dim, positions.data());
        p.freq_factors = c.freq_factors ? d_ff.get() : nullptr;
        cuda::rope(p, d_x.get(), num_tokens, num_heads, token_stride, c.head_dim, d_pos.get(), nullptr);
        EXPECT_LT(nmse(x, d_x.download()), 1e-9) << c.name;
    }
}

TEST(CudaOps, ArgmaxTakesFirstMaximumAndIgnoresNan) {
    MOERIG_REQUIRE_GPU();
    const int64_t n = 32000;
    auto logits = random_floats(static_cast<size_t>(3 * n), 5);
    logits[123] = 50.0f;  // row 0: clear winner
    logits[n + 7] = 60.0f;
    logits[n + 9000] = 60.0f;  // row 1: tie, first wins
    logits[2 * n + 5] = NAN;
    logits[2 * n + 31999] = 70.0f;  // row 2: NaN never wins
    DeviceArray<float> d_l(logits);
    DeviceArray<int32_t> d_out(3);
    argmax_rows(d_l.get(), 3, n, d_out.get(), nullptr);
    const auto got = d_out.download();
    for (int r = 0; r < 3; ++r) {
        EXPECT_EQ(got[r], kernels::argmax(logits.data() + r * n, n)) << "row " << r;
    }
    EXPECT_EQ(got[1], 7);
}

TEST(CudaOps, GatherCombineAndScatterAddRoundTripRows) {
    MOERIG_REQUIRE_GPU();
    const int64_t num_tokens = 6, k = 2, dim = 300;
    const auto x = random_floats(static_cast<size_t>(num_tokens * dim), 8);
    // Slot s holds token s / k's row, packed in a permuted order: slot_of[t*k+j] = where it lives.
    const std::vector<int32_t> slot_of = {3, 10, 0, 5, 11, 1, 2, 7, 4, 9, 8, 6};
    std::vector<int32_t> row_of_slot(slot_of.size());
    for (size_t i = 0; i < slot_of.size(); ++i) row_of_slot[slot_of[i]] = static_cast<int32_t>(i / k);
    const auto w = random_floats(slot_of.size(), 9);
    DeviceArray<float> d_x(x), d_w(w), d_packed(slot_of.size() * dim), d_out(x.size());
    DeviceArray<int32_t> d_slot_of(slot_of), d_rows(row_of_slot);
    gather_rows(d_x.get(), dim, d_rows.get(), static_cast<int64_t>(slot_of.size()), dim, d_packed.get(), dim, nullptr);
    const auto packed = d_packed.download();
    for (size_t s = 0; s < slot_of.size(); ++s) {
        ASSERT_EQ(0, std::memcmp(packed.data() + s * dim, x.data() + row_of_slot[s] * dim, dim * sizeof(float)));
    }
    combine_rows(d_packed.get(), dim, d_slot_of.get(), d_w.get(), num_tokens, k, dim, d_out.get(), dim, false, nullptr);
    std::vector<float> ref(x.size(), 0.0f);
    for (int64_t t = 0; t < num_tokens; ++t)
        for (int64_t j = 0; j < k; ++j)
            for (int64_t c = 0; c < dim; ++c) ref[t * dim + c] += w[t * k + j] * x[t * dim + c];
    EXPECT_LT(nmse(ref, d_out.download()), 1e-12);

    // scatter_add over the packed rows with the packed order's weights gives the same sums.
    std::vector<float> w_packed(slot_of.size());
    for (size_t i = 0; i < slot_of.size(); ++i) w_packed[slot_of[i]] = w[i];
    DeviceArray<float> d_wp(w_packed), d_out2(x.size());
    scatter_add_rows(d_packed.get(), dim, d_rows.get(), d_wp.get(), static_cast<int64_t>(slot_of.size()), dim,
                     d_out2.get(), dim, nullptr);
    EXPECT_LT(nmse(ref, d_out2.download()), 1e-12);
}

}  // namespace
}  // namespace moerig::kernels::cuda::test
