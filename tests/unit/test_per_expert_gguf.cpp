// Mixtral GGUF files with unmerged per-expert tensors (old convert output: blk.N.ffn_gate.E.weight, ffn_up.E,
// ffn_down.E instead of ffn_*_exps): the mixtral-f32 fixture rewritten with its merged expert tensors split per
// expert must give bit-identical logits and the same greedy tokens; a missing or mis-shaped expert fails clearly.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "kernels/error.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "tests/common/gguf_builder.h"

using moerig::runtime::Model;
using moerig::runtime::ModelOptions;
using moerig::runtime::Session;
using moerig::testing::GgufBuilder;

namespace {

namespace fs = std::filesystem;

const fs::path kMerged = fs::path(MOERIG_TEST_DATA) / "models" / "mixtral-f32.gguf";

/// Copies the metadata of `g` (arrays of strings, floats and integers included: the tokenizer comes along).
void copy_metadata(const moerig::formats::GgufModel& g, GgufBuilder& b) {
    using moerig::formats::GgufType;
    for (const auto& [key, v] : g.metadata()) {
        switch (v.type) {
            case GgufType::STRING:
                b.kv_str(key, v.s);
                break;
            case GgufType::BOOL:
                b.kv_bool(key, v.u != 0);
                break;
            case GgufType::F32:
            case GgufType::F64:
                b.kv_f32(key, static_cast<float>(v.f));
                break;
            case GgufType::ARRAY: {
                if (v.elem_type == GgufType::STRING) {
                    std::vector<std::string> xs;
                    for (const auto& e : v.arr) xs.push_back(e.s);
                    b.kv_strs(key, xs);
                } else if (v.elem_type == GgufType::F32 || v.elem_type == GgufType::F64) {
                    std::vector<float> xs;
                    for (const auto& e : v.arr) xs.push_back(static_cast<float>(e.f));
                    b.kv_f32s(key, xs);
                } else {
                    std::vector<int32_t> xs;
                    for (const auto& e : v.arr) xs.push_back(static_cast<int32_t>(e.i));
                    b.kv_i32s(key, xs);
                }
                break;
            }
            default:
                if (v.is_integer()) b.kv_u64(key, v.u);
        }
    }
}

/// Writes the fixture with every blk.N.ffn_{gate,up,down}_exps.weight split into per-expert tensors;
/// `skip(name)` drops a per-expert tensor and `reshape(name)` halves its row count (error tests).
fs::path write_split(const std::string& tag, const std::function<bool(const std::string&)>& skip = {},
                     const std::function<bool(const std::string&)>& reshape = {}) {
    moerig::formats::GgufModel g(kMerged);
    GgufBuilder b;
    copy_metadata(g, b);
    int split = 0;
    for (const auto& t : g.tensors()) {
        const std::string suffix = "_exps.weight";
        const bool merged = t.name.size() > suffix.size() && t.name.ends_with(suffix);
        if (!merged) {
            b.tensor(t.name, t.dims, t.type, std::vector<uint8_t>(t.data, t.data + t.num_bytes));
            continue;
        }
        if (t.dims.size() != 3) throw std::runtime_error(t.name + ": merged expert tensor is not 3-D");
        const std::string base = t.name.substr(0, t.name.size() - suffix.size());  // blk.N.ffn_gate
        const uint64_t expert_bytes = t.num_bytes / t.dims[2];
        for (uint64_t e = 0; e < t.dims[2]; ++e) {
            const std::string name = base + "." + std::to_string(e) + ".weight";
            if (skip && skip(name)) continue;
            const uint8_t* p = t.data + e * expert_bytes;
            if (reshape && reshape(name)) {
                const uint64_t half = expert_bytes / 2;
                b.tensor(name, {t.dims[0], t.dims[1] / 2}, t.type, std::vector<uint8_t>(p, p + half));
            } else {
                b.tensor(name, {t.dims[0], t.dims[1]}, t.type, std::vector<uint8_t>(p, p + expert_bytes));
            }
        }
        ++split;
    }
    EXPECT_GT(split, 0) << "the fixture has no merged expert tensors";
    const fs::path out =
        fs::temp_directory_path() / ("moerig_per_expert_" + tag + "_" + std::to_string(getpid()) + ".gguf");
    b.write(out.string());
    return out;
}

ModelOptions options() {
    ModelOptions o;
    o.num_threads = 2;
    o.context = 64;
    o.progress = false;
    return o;
}

TEST(PerExpertGguf, SplitExpertsGiveIdenticalLogitsAndTokens) {
    const fs::path split = write_split("ok");
    const auto merged_model = Model::load(kMerged.string(), options());
    const auto split_model = Model::load(split.string(), options());
    fs::remove(split);

    const auto& l0 = split_model->weights().layers.at(0);
    EXPECT_FALSE(l0.gate_exps.merged());
    EXPECT_EQ(static_cast<int64_t>(l0.gate_exps.per_expert.size()), merged_model->hparams().n_expert);
    EXPECT_TRUE(merged_model->weights().layers.at(0).gate_exps.merged());

    const std::vector<int32_t> prompt = {1, 17, 42, 5, 99, 3, 64, 12};
    Session a(*merged_model, 64), b(*split_model, 64);
    auto la = a.eval(prompt, /*all_logits=*/true);
    auto lb = b.eval(prompt, /*all_logits=*/true);
    ASSERT_EQ(la.size(), lb.size());
    for (size_t i = 0; i < la.size(); ++i) ASSERT_EQ(la[i], lb[i]) << "logit " << i;

    // Greedy continuation, token by token (decode path).
    for (int step = 0; step < 12; ++step) {
        const auto best = [](const std::vector<float>& v, size_t off, size_t n) {
            size_t arg = 0;
            for (size_t i = 1; i < n; ++i)
                if (v[off + i] > v[off + arg]) arg = i;
            return static_cast<int32_t>(arg);
        };
        const size_t n_vocab = static_cast<size_t>(merged_model->hparams().n_vocab);
        const int32_t ta = best(la, la.size() - n_vocab, n_vocab), tb = best(lb, lb.size() - n_vocab, n_vocab);
        ASSERT_EQ(ta, tb) << "step " << step;
        const std::vector<int32_t> next = {ta};
        la = a.eval(next);
        lb = b.eval(next);
        for (size_t i = 0; i < la.size(); ++i) ASSERT_EQ(la[i], lb[i]) << "step " << step << " logit " << i;
    }
}

TEST(PerExpertGguf, MissingExpertIsNamed) {
    const fs::path split = write_split("missing", [](const std::string& n) { return n == "blk.1.ffn_up.3.weight"; });
    try {
        Model::load(split.string(), options());
        FAIL() << "expected FormatError";
    } catch (const moerig::FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("blk.1.ffn_up.3.weight"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(split.string()), std::string::npos) << e.what();
    }
    fs::remove(split);
}

TEST(PerExpertGguf, MisShapedExpertIsNamed) {
    const fs::path split =
        write_split("shape", {}, [](const std::string& n) { return n == "blk.0.ffn_down.1.weight"; });
    try {
        Model::load(split.string(), options());
        FAIL() << "expected FormatError";
    } catch (const moerig::FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("blk.0.ffn_down.1.weight"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("expected"), std::string::npos) << e.what();
    }
    fs::remove(split);
}

}  // namespace
