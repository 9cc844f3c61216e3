// The card expert backends of a sharded run, without a GPU: what a card uploads to a device of its own (its expert
// slots per MoE layer, the bytes the CPU card charges for them, F32 conversions where the device cannot decode a
// type, rows packed exactly as in the file), and the ShardedOptions::card_experts wiring, driven by a CPU backend
// that records what it is asked: every card gets its own backend (hosts none), every MoE layer's experts run
// through the backends (single-card layers too), each (token, expert) once, and the tokens stay the one-card ones;
// `moerig run --rig R --gpu 0` without a usable GPU fails with one clear line.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "kernels/error.h"
#include "kernels/quant.h"
#include "runtime/card_experts_backend.h"
#include "runtime/model.h"
#include "runtime/moe.h"
#include "runtime/session.h"
#include "runtime/sharded_executor.h"
#include "tests/common/cli_run.h"
#include "tests/common/greedy_run.h"
#ifdef MOERIG_HAVE_CUDA
#include "kernels/cuda/check.h"
#endif

using namespace moerig::runtime;
using moerig::DType;
using moerig::test::GreedyRun;
using moerig::test::nmse;

namespace {

constexpr size_t kBudget = size_t{256} << 20;
constexpr int64_t kContext = 64;
constexpr int kNumGenerated = 6;
const std::vector<int32_t> kPrompt = {1, 17, 230, 45, 9, 301, 77, 12, 5, 64, 128, 3};

const char* const kFixtures[] = {"qwen3moe-f32",       "mixtral-f32",      "olmoe-f32",       "qwen2moe-f32",
                                 "deepseek2-lite-f32", "deepseek2-v3-f32", "qwen3moe-q4_k_m", "gpt-oss-mxfp4",
                                 "mixtral-q8_0",       "qwen3moe-f16",     "olmoe-bf16",      "deepseek2-v3-q6_k"};

std::unique_ptr<Model> load(const std::string& name) {
    return Model::load(std::string(MOERIG_TEST_DATA) + "/models/" + name + ".gguf",
                       ModelOptions{.num_threads = 1, .context = kContext, .progress = false});
}

bool decodes_everything(DType) {
    return true;
}

std::set<int32_t> slots_of(const ShardCard& card, int64_t layer_idx) {
    const auto& e = card.experts.at(static_cast<size_t>(layer_idx));
    return {e.begin(), e.end()};
}

/// A CPU backend: the engine's own expert FFN from the mapping, recording every expert it is asked for.
class RecordingBackend final : public CardExpertsBackend {
  public:
    struct Call {
        int64_t layer_idx;
        int expert_idx;
        int64_t num_rows;
    };

    explicit RecordingBackend(const CardExpertsRequest& r)
        : model_(r.model),
          pool_(r.pool),
          bytes_(card_expert_upload(r.model, r.layout.cards.at(static_cast<size_t>(r.card_idx)), decodes_everything)
                     .bytes()),
          experts_(*this) {}
    CardExperts& layer(int64_t layer_idx) override {
        experts_.layer_idx = layer_idx;
        return experts_;
    }
    size_t weight_bytes() const override { return bytes_; }

    std::vector<Call> calls;
    /// When set: calls left before one throws (shared by the cards' backends).
    std::atomic<int64_t>* fail_countdown = nullptr;

  private:
    struct LayerExperts final : CardExperts {
        explicit LayerExperts(RecordingBackend& owner) : owner(owner) {}
        void run_expert(int expert_idx, const float* x, int64_t num_rows, float* y) override {
            if (owner.fail_countdown != nullptr && owner.fail_countdown->fetch_sub(1) <= 0)
                throw std::runtime_error("injected expert failure");
            owner.calls.push_back({layer_idx, expert_idx, num_rows});
            const LayerWeights& l = owner.model_.weights().layers.at(static_cast<size_t>(layer_idx));
            const int64_t n_ff = l.gate_exps.rows;
            std::vector<float> gate(static_cast<size_t>(num_rows * n_ff)), up(gate.size());
            run_expert_rows(l, expert_idx, owner.model_.hparams().n_embd,
                            ExpertRows{.x = x, .gate = gate.data(), .up = up.data(), .y = y, .num_rows = num_rows},
                            owner.pool_);
        }
        RecordingBackend& owner;
        int64_t layer_idx = 0;
    };

    const Model& model_;
    moerig::kernels::ThreadPool& pool_;
    size_t bytes_;
    LayerExperts experts_;
};

}  // namespace

TEST(CardExpertUpload, EachCardUploadsItsSlotsAndTheBytesTheCpuCardCharges) {
    for (const char* name : kFixtures) {
        SCOPED_TRACE(name);
        auto model = load(name);
        const ModelHParams& hp = model->hparams();
        const ShardLayout layout = ShardLayout::expert_parallel(hp, 4, kBudget);
        const auto shares = card_share_bytes(model->gguf(), hp, layout, kContext);
        for (int c = 0; c < layout.num_cards(); ++c) {
            const ShardCard& card = layout.cards[static_cast<size_t>(c)];
            const CardExpertUpload up = card_expert_upload(*model, card, decodes_everything);
            EXPECT_EQ(up.bytes(), shares[static_cast<size_t>(c)].expert_weights) << card.name;
            EXPECT_TRUE(up.conversions().empty());
            size_t next = 0;
            for (int64_t l = 0; l < hp.n_layer; ++l) {
                if (slots_of(card, l).empty()) continue;
                ASSERT_LT(next, up.layers.size());
                const CardLayerUpload& ul = up.layers[next++];
                EXPECT_EQ(ul.layer_idx, l);
                EXPECT_TRUE(std::is_sorted(ul.experts.begin(), ul.experts.end()));
                EXPECT_EQ(std::set<int32_t>(ul.experts.begin(), ul.experts.end()), slots_of(card, l));
                EXPECT_EQ(ul.gate.has_bias, name == std::string("gpt-oss-mxfp4"));
            }
            EXPECT_EQ(next, up.layers.size()) << "only layers where the card holds experts";
        }
    }
}

TEST(CardExpertUpload, TypesTheDeviceCannotDecodeAreCountedAsF32) {
    for (const char* name : {"mixtral-q8_0", "qwen3moe-q4_k_m", "gpt-oss-mxfp4", "olmoe-bf16"}) {
        SCOPED_TRACE(name);
        auto model = load(name);
        const ModelHParams& hp = model->hparams();
        const ShardLayout layout = ShardLayout::single(hp, kBudget);
        const CardExpertUpload up =
            card_expert_upload(*model, layout.cards[0], [](DType type) { return type == DType::F32; });
        // Expected from the file alone: every expert tensor of a non-F32 type as rows x cols floats.
        size_t want = 0, num_converted = 0;
        for (const auto& t : model->gguf().tensors()) {
            if (t.name.find("_exps.") == std::string::npos) continue;
            const uint64_t per_expert = t.num_bytes / t.dims.back();
            const bool converted = t.type != DType::F32 && t.dims.size() == 3;
            want += static_cast<size_t>(hp.n_expert) * (converted ? t.dims[0] * t.dims[1] * sizeof(float) : per_expert);
            num_converted += converted ? 1 : 0;
        }
        EXPECT_EQ(up.bytes(), want);
        EXPECT_EQ(up.conversions().size(), num_converted);
        EXPECT_GT(num_converted, 0u);
    }
}

TEST(CardExpertUpload, PackedExpertsAreTheFilesRowsOrTheirF32Values) {
    for (const char* name : {"mixtral-q8_0", "qwen3moe-f32", "qwen3moe-q4_k_m"}) {
        SCOPED_TRACE(name);
        auto model = load(name);
        const ModelHParams& hp = model->hparams();
        int64_t l = 0;
        while (!hp.is_moe_layer(l)) ++l;
        const auto& t = model->gguf().tensor("blk." + std::to_string(l) + ".ffn_down_exps.weight");
        const int64_t e = hp.n_expert - 1;  // the last expert: offsets count
        const auto rows = static_cast<int64_t>(t.dims[1]), cols = static_cast<int64_t>(t.dims[0]);
        const size_t row_bytes = dtype_bytes(t.type, static_cast<uint64_t>(cols));
        const uint8_t* file = t.data + static_cast<size_t>(e * rows) * row_bytes;
        const ExpertTensor& down = model->weights().layers.at(static_cast<size_t>(l)).down_exps;

        ExpertProjectionUpload native{
            .type = t.type, .rows = rows, .cols = cols, .matrix_bytes = static_cast<size_t>(rows) * row_bytes};
        std::vector<uint8_t> packed(native.matrix_bytes);
        pack_expert_matrix(down.expert(e), native, packed.data());
        EXPECT_EQ(std::memcmp(packed.data(), file, packed.size()), 0);

        ExpertProjectionUpload as_f32{.type = DType::F32,
                                      .rows = rows,
                                      .cols = cols,
                                      .matrix_bytes = static_cast<size_t>(rows * cols) * sizeof(float),
                                      .converted = true};
        std::vector<float> f(static_cast<size_t>(rows * cols)), row(static_cast<size_t>(cols));
        pack_expert_matrix(down.expert(e), as_f32, f.data());
        for (int64_t r : {int64_t{0}, rows / 2, rows - 1}) {
            moerig::kernels::dequantize_row(t.type, file + static_cast<size_t>(r) * row_bytes, row.data(), cols);
            EXPECT_TRUE(std::equal(row.begin(), row.end(), f.begin() + r * cols)) << "row " << r;
        }
        // A view of another shape is refused rather than packed.
        ExpertProjectionUpload wrong = native;
        wrong.rows = rows + 1;
        EXPECT_THROW(pack_expert_matrix(down.expert(e), wrong, packed.data()), moerig::ConfigError);
    }
}

TEST(CardExpertsFactory, EveryMoeLayerRunsThroughTheCardsBackendsAndGivesTheOneCardTokens) {
    for (const char* name : {"qwen3moe-f32", "gpt-oss-mxfp4", "deepseek2-lite-f32", "mixtral-q8_0"}) {
        SCOPED_TRACE(name);
        auto model = load(name);
        const ModelHParams& hp = model->hparams();
        Session session(*model, kContext);
        const GreedyRun ref =
            moerig::test::greedy([&](std::span<const int32_t> t) { return session.eval(t); }, kPrompt, kNumGenerated);
        for (const moerig::test::LayoutCase& lc : moerig::test::four_card_layouts()) {
            SCOPED_TRACE(lc.name);
            std::vector<RecordingBackend*> backends;
            std::vector<int> asked;
            ShardedOptions options{.context = kContext};
            options.card_experts = [&](const CardExpertsRequest& r) {
                asked.push_back(r.card_idx);
                auto b = std::make_unique<RecordingBackend>(r);
                backends.push_back(b.get());
                return b;
            };
            ShardedModel sharded(*model, lc.make(hp, kBudget), options);
            EXPECT_EQ(asked, (std::vector<int>{0, 1, 2, 3}));
            const GreedyRun run = moerig::test::greedy([&](std::span<const int32_t> t) { return sharded.eval(t); },
                                                       kPrompt, kNumGenerated);
            moerig::test::expect_same_run(run, ref);

            // Each (token, expert) of every MoE layer ran once, on a card holding that expert.
            const auto shares = card_share_bytes(model->gguf(), hp, sharded.layout(), kContext);
            std::map<int64_t, int64_t> rows_per_layer;
            for (int c = 0; c < 4; ++c) {
                const ShardCard& card = sharded.layout().cards[static_cast<size_t>(c)];
                EXPECT_EQ(sharded.card_experts(c), backends[static_cast<size_t>(c)]);
                EXPECT_EQ(sharded.card_stats()[static_cast<size_t>(c)].expert_backend_bytes,
                          shares[static_cast<size_t>(c)].expert_weights);
                for (const RecordingBackend::Call& call : backends[static_cast<size_t>(c)]->calls) {
                    EXPECT_TRUE(slots_of(card, call.layer_idx).contains(call.expert_idx))
                        << card.name << " asked for expert " << call.expert_idx << " of layer " << call.layer_idx;
                    EXPECT_GT(call.num_rows, 0);
                    rows_per_layer[call.layer_idx] += call.num_rows;
                }
            }
            const auto num_tokens = static_cast<int64_t>(kPrompt.size()) + kNumGenerated;
            for (int64_t l = 0; l < hp.n_layer; ++l) {
                EXPECT_EQ(rows_per_layer[l], hp.is_moe_layer(l) ? num_tokens * hp.n_expert_used : 0) << "layer " << l;
            }
        }
    }
}

TEST(CardExpertsFactory, HostsAndCardsWithoutABackendComputeFromTheMapping) {
    auto model = load("qwen3moe-f32");
    const ModelHParams& hp = model->hparams();
    Session session(*model, kContext);
    const GreedyRun ref =
        moerig::test::greedy([&](std::span<const int32_t> t) { return session.eval(t); }, kPrompt, kNumGenerated);
    ShardLayout layout = ShardLayout::expert_parallel(hp, 3, kBudget);
    std::vector<std::vector<int32_t>> spilled(static_cast<size_t>(hp.n_layer));
    for (int64_t l = 0; l < hp.n_layer; ++l)
        if (hp.is_moe_layer(l)) spilled[static_cast<size_t>(l)] = {1, 4};
    layout.spill_to_host(spilled, size_t{1} << 30);
    ASSERT_EQ(layout.num_cards(), 4);
    std::vector<int> asked;
    std::vector<RecordingBackend*> backends(4, nullptr);
    ShardedOptions options{.context = kContext};
    options.card_experts = [&](const CardExpertsRequest& r) -> std::unique_ptr<CardExpertsBackend> {
        asked.push_back(r.card_idx);
        if (r.card_idx == 1) return nullptr;  // this card keeps computing from the mapping
        auto b = std::make_unique<RecordingBackend>(r);
        backends[static_cast<size_t>(r.card_idx)] = b.get();
        return b;
    };
    ShardedModel sharded(*model, layout, options);
    EXPECT_EQ(asked, (std::vector<int>{0, 1, 2})) << "the host participant gets no backend";
    const GreedyRun run =
        moerig::test::greedy([&](std::span<const int32_t> t) { return sharded.eval(t); }, kPrompt, kNumGenerated);
    moerig::test::expect_same_run(run, ref);
    EXPECT_EQ(sharded.card_experts(1), nullptr);
    EXPECT_EQ(sharded.card_experts(3), nullptr);
    EXPECT_EQ(sharded.card_stats()[1].expert_backend_bytes, 0u);
    EXPECT_EQ(sharded.card_stats()[3].expert_backend_bytes, 0u);
    for (int c : {0, 2}) {
        EXPECT_FALSE(backends[static_cast<size_t>(c)]->calls.empty()) << "card " << c;
        for (const auto& call : backends[static_cast<size_t>(c)]->calls) {
            EXPECT_TRUE(
                slots_of(sharded.layout().cards[static_cast<size_t>(c)], call.layer_idx).contains(call.expert_idx));
        }
    }
}

TEST(CardExpertsFactory, AStepThatFailsOnACardLeavesEverySlotWhereItWasAndTheModelUsable) {
    auto model = load("qwen3moe-f32");
    const ShardLayout layout = ShardLayout::expert_parallel(model->hparams(), 4, kBudget);
    constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
    std::atomic<int64_t> countdown{kNever};
    std::vector<RecordingBackend*> backends;
    ShardedOptions options{.context = kContext, .max_step_rows = 4};
    options.card_experts = [&](const CardExpertsRequest& r) {
        auto b = std::make_unique<RecordingBackend>(r);
        b->fail_countdown = &countdown;
        backends.push_back(b.get());
        return b;
    };
    ShardedModel sharded(*model, layout, options);
    const std::span<const int32_t> prompt(kPrompt.data(), 8);  // two ubatches of 4 rows
    // How many expert calls the first ubatch makes: the prompt's first 4 tokens alone.
    sharded.eval(prompt.first(4));
    int64_t first_ubatch_calls = 0;
    for (RecordingBackend* b : backends) first_ubatch_calls += static_cast<int64_t>(b->calls.size());
    ASSERT_GT(first_ubatch_calls, 0);
    sharded.reset();
    countdown = first_ubatch_calls;  // the second ubatch's first expert call throws
    EXPECT_THROW(sharded.eval(prompt), std::runtime_error);
    EXPECT_EQ(sharded.n_past(), 0);  // the first ubatch's positions are forgotten

    // The model runs on: the same step now gives what a model that never failed gives.
    countdown = kNever;
    ShardedModel reference(*model, layout, ShardedOptions{.context = kContext, .max_step_rows = 4});
    const std::vector<float> want = reference.eval(prompt);
    const std::vector<float> got = sharded.eval(prompt);
    EXPECT_LE(nmse(got, want), 1e-12);
    EXPECT_EQ(sharded.n_past(), 8);
}

TEST(CardExpertsFactory, ABackendThatCannotBeMadeAbortsTheShardedModel) {
    auto model = load("qwen3moe-f32");
    ShardedOptions options{.context = kContext};
    options.card_experts = [](const CardExpertsRequest& r) -> std::unique_ptr<CardExpertsBackend> {
        MOERIG_CHECK(r.card_idx != 2, moerig::OutOfMemoryError, "card '{}' cannot hold its experts",
                     r.layout.cards.at(static_cast<size_t>(r.card_idx)).name);
        return std::make_unique<RecordingBackend>(r);
    };
    try {
        ShardedModel sharded(*model, ShardLayout::expert_parallel(model->hparams(), 4, kBudget), options);
        FAIL() << "expected OutOfMemoryError";
    } catch (const moerig::OutOfMemoryError& e) {
        EXPECT_NE(std::string(e.what()).find("card2"), std::string::npos) << e.what();
    }
}

TEST(CardExpertsCli, GpuExpertsWithoutAUsableGpuAreOneClearLineAndExitCode2) {
#ifdef MOERIG_HAVE_CUDA
    if (moerig::cuda::device_count() > 0) GTEST_SKIP() << "this machine has a GPU (test_cuda_sharded.cpp runs it)";
#endif
    // Without CUDA built: "built without CUDA"; with CUDA but no GPU: "CUDA GPU 0 requested but ... 0 GPU(s)".
    const auto r = moerig::testing::run_moerig("run -m " + std::string(MOERIG_TEST_DATA) +
                                               "/models/qwen3moe-f32.gguf -p hi -n 2 --rig rtx3060-6x-gen3x4 "
                                               "--strategy expert-parallel --gpu 0");
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("CUDA"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}
