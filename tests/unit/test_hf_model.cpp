// Hugging Face checkpoint import (runtime/hf_model.h): bad inputs fail with errors naming the file and the
// field or tensor (missing config.json keys, unsupported model_type, quantised checkpoints, FP8 tensors, missing
// or mis-shaped tensors), and the name mapping/metadata come out as the engine expects. Each case copies the
// mixtral-f32 fixture of tests/data/hf into a temporary directory and breaks one thing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/error.h"
#include "runtime/hf_model.h"
#include "runtime/model.h"
#include "runtime/session.h"

namespace moerig {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kFixture = fs::path(MOERIG_TEST_DATA) / "hf" / "mixtral-f32";

struct StEntry {
    std::string name, dtype;
    std::vector<uint64_t> shape;
    std::vector<uint8_t> bytes;
};

void write_safetensors(const fs::path& path, const std::vector<StEntry>& entries) {
    json header = json::object();
    uint64_t off = 0;
    for (const auto& e : entries) {
        header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {off, off + e.bytes.size()}}};
        off += e.bytes.size();
    }
    std::string h = header.dump();
    while (h.size() % 8) h.push_back(' ');
    std::ofstream out(path, std::ios::binary);
    const uint64_t n = h.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out.write(h.data(), static_cast<std::streamsize>(h.size()));
    for (const auto& e : entries) out.write(reinterpret_cast<const char*>(e.bytes.data()), e.bytes.size());
}

class HfCheckpointImport : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("moerig_hf_" + std::to_string(getpid()) + "_" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        root_ = dir_;
        for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(kFixture / f, dir_ / f);
    }
    void TearDown() override { fs::remove_all(root_); }

    /// Replaces the copied checkpoint by another fixture of tests/data/hf.
    void use_fixture(const std::string& name) {
        for (const char* f : {"config.json", "model.safetensors"})
            fs::copy_file(kFixture.parent_path() / name / f, dir_ / f, fs::copy_options::overwrite_existing);
    }

    void edit_config(const std::function<void(json&)>& edit) {
        json j;
        {
            std::ifstream in(dir_ / "config.json");
            j = json::parse(in);
        }
        edit(j);
        std::ofstream(dir_ / "config.json") << j.dump(1);
    }

    /// The fixture's tensors, copied out of the file.
    static std::vector<StEntry> fixture_entries() {
        std::vector<StEntry> entries;
        formats::SafetensorsFile f(kFixture / "model.safetensors");
        for (const auto& t : f.tensors())
            entries.push_back({t.name, std::string(formats::st_dtype_name(t.dtype)), t.shape,
                               std::vector<uint8_t>(t.data, t.data + t.num_bytes)});
        return entries;
    }

    /// Rewrites model.safetensors through `edit` over its entries.
    void edit_tensors(const std::function<void(std::vector<StEntry>&)>& edit) {
        std::vector<StEntry> entries = fixture_entries();
        edit(entries);
        write_safetensors(dir_ / "model.safetensors", entries);
    }

    std::unique_ptr<runtime::Model> load() {
        runtime::ModelOptions o;
        o.num_threads = 1;
        o.context = 32;
        o.progress = false;
        return runtime::Model::load(dir_.string(), o);
    }

    template <typename E>
    std::string load_error() {
        try {
            load();
        } catch (const E& e) {
            return e.what();
        } catch (const std::exception& e) {
            ADD_FAILURE() << "wrong exception type: " << e.what();
            return "";
        }
        ADD_FAILURE() << "expected an error";
        return "";
    }

    fs::path dir_;
    fs::path root_;
};

bool has(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

TEST_F(HfCheckpointImport, UnmodifiedCopyLoads) {
    const auto m = load();
    EXPECT_EQ(m->hparams().n_layer, 2);
    EXPECT_EQ(m->hparams().n_expert, 4);
    EXPECT_EQ(m->hparams().rope_type, runtime::RopeType::kNeox);  // HF q/k are not permuted
    EXPECT_TRUE(m->hparams().expert_weights_norm);
    EXPECT_TRUE(m->hparams().is_eog(2));
    EXPECT_FALSE(m->weights().layers[0].gate_exps.merged());
    EXPECT_NE(m->gguf().find_tensor("blk.1.ffn_down.3.weight"), nullptr);
    EXPECT_TRUE(runtime::is_hf_checkpoint(dir_));
    EXPECT_TRUE(runtime::is_hf_checkpoint(dir_ / "config.json"));
    EXPECT_FALSE(runtime::is_hf_checkpoint(fs::path(MOERIG_TEST_DATA) / "models" / "mixtral-f32.gguf"));
}

TEST_F(HfCheckpointImport, MissingConfigKeyNamesFileAndField) {
    edit_config([](json& j) { j.erase("num_local_experts"); });
    const std::string e = load_error<ConfigError>();
    EXPECT_TRUE(has(e, "config.json")) << e;
    EXPECT_TRUE(has(e, "num_local_experts")) << e;
}

TEST_F(HfCheckpointImport, MalformedConfigValueNamesField) {
    edit_config([](json& j) { j["hidden_size"] = "sixty-four"; });
    const std::string e = load_error<ConfigError>();
    EXPECT_TRUE(has(e, "config.json") && has(e, "hidden_size")) << e;
}

TEST_F(HfCheckpointImport, UnsupportedModelTypeListsSupported) {
    edit_config([](json& j) { j["model_type"] = "jamba"; });
    const std::string e = load_error<UnsupportedError>();
    EXPECT_TRUE(has(e, "config.json") && has(e, "model_type") && has(e, "jamba") && has(e, "qwen3_moe")) << e;
}

TEST_F(HfCheckpointImport, GptOssIsNotSupportedYet) {
    edit_config([](json& j) { j["model_type"] = "gpt_oss"; });
    const std::string e = load_error<UnsupportedError>();
    EXPECT_TRUE(has(e, "gpt_oss") && has(e, "not supported yet")) << e;
}

TEST_F(HfCheckpointImport, Fp8QuantizationConfigIsNotSupportedYet) {
    edit_config([](json& j) {
        j["quantization_config"] = {{"quant_method", "fp8"}, {"weight_block_size", {128, 128}}};
    });
    const std::string e = load_error<UnsupportedError>();
    EXPECT_TRUE(has(e, "config.json") && has(e, "fp8") && has(e, "not supported yet")) << e;
}

TEST_F(HfCheckpointImport, Fp8TensorNamesFileAndTensor) {
    edit_tensors([](std::vector<StEntry>& es) {
        for (auto& e : es) {
            if (e.name == "model.layers.0.block_sparse_moe.experts.1.w2.weight") {
                e.dtype = "F8_E4M3";
                e.bytes.resize(e.bytes.size() / 4);
            }
        }
    });
    const std::string e = load_error<UnsupportedError>();
    EXPECT_TRUE(has(e, "model.safetensors") && has(e, "model.layers.0.block_sparse_moe.experts.1.w2.weight") &&
                has(e, "not supported yet"))
        << e;
}

TEST_F(HfCheckpointImport, MissingTensorNamesCheckpointTensor) {
    edit_tensors([](std::vector<StEntry>& es) {
        std::erase_if(es, [](const StEntry& e) { return e.name == "model.layers.1.self_attn.k_proj.weight"; });
    });
    const std::string e = load_error<FormatError>();
    EXPECT_TRUE(has(e, "model.layers.1.self_attn.k_proj.weight") && has(e, "missing")) << e;
    EXPECT_TRUE(has(e, dir_.string())) << e;
}

TEST_F(HfCheckpointImport, MissingExpertNamesCheckpointTensor) {
    for (const char* name : {"model.layers.0.block_sparse_moe.experts.2.w3.weight",
                             "model.layers.1.block_sparse_moe.experts.0.w1.weight"}) {
        SetUp();
        edit_tensors(
            [&](std::vector<StEntry>& es) { std::erase_if(es, [&](const StEntry& e) { return e.name == name; }); });
        const std::string e = load_error<FormatError>();
        EXPECT_TRUE(has(e, name) && has(e, "missing")) << e;
    }
}

TEST_F(HfCheckpointImport, WrongShapeNamesTensorAndFile) {
    edit_tensors([](std::vector<StEntry>& es) {
        for (auto& e : es) {
            if (e.name == "model.layers.0.self_attn.o_proj.weight") {
                e.shape = {32, 64};  // [out, in] should be [64, 64]
                e.bytes.resize(e.bytes.size() / 2);
            }
        }
    });
    const std::string e = load_error<FormatError>();
    EXPECT_TRUE(has(e, "model.layers.0.self_attn.o_proj.weight") && has(e, "model.safetensors") && has(e, "expected"))
        << e;
}

TEST_F(HfCheckpointImport, MissingLmHeadWithoutTyingIsAnError) {
    edit_tensors([](std::vector<StEntry>& es) {
        std::erase_if(es, [](const StEntry& e) { return e.name == "lm_head.weight"; });
    });
    const std::string e = load_error<FormatError>();
    EXPECT_TRUE(has(e, "lm_head.weight") && has(e, "tie_word_embeddings")) << e;
}

TEST_F(HfCheckpointImport, TiedEmbeddingsUseTheEmbeddingMatrix) {
    edit_tensors([](std::vector<StEntry>& es) {
        std::erase_if(es, [](const StEntry& e) { return e.name == "lm_head.weight"; });
    });
    edit_config([](json& j) { j["tie_word_embeddings"] = true; });
    const auto m = load();
    EXPECT_EQ(m->weights().output.data, m->weights().token_embd.data);
}

TEST_F(HfCheckpointImport, DeepseekV3ConfigBecomesGroupLimitedSigmoidRouting) {
    use_fixture("deepseekv3-f32");
    const auto m = load();
    const auto& hp = m->hparams();
    EXPECT_TRUE(hp.is_mla());
    EXPECT_EQ(hp.gating_func, runtime::GatingFunc::kSigmoid);
    EXPECT_EQ(hp.n_expert_groups, 4);
    EXPECT_EQ(hp.n_group_used, 2);
    EXPECT_FLOAT_EQ(hp.expert_weights_scale, 2.5f);
    EXPECT_TRUE(hp.expert_weights_norm);
    EXPECT_EQ(hp.n_layer_dense_lead, 1);
    EXPECT_TRUE(hp.rope_yarn);
    EXPECT_EQ(hp.rope_type, runtime::RopeType::kNorm);  // rope_interleave: pairs, as GGUF DeepSeek
    EXPECT_NE(m->weights().layers[1].exp_probs_b, nullptr);
    EXPECT_EQ(m->weights().layers[0].ffn_gate_inp.data, nullptr);  // first_k_dense_replace
}

TEST_F(HfCheckpointImport, DeepseekV2ScalesOnlyWithoutRenormalisation) {
    use_fixture("deepseekv3-f32");
    auto v2 = [&](bool norm) {
        edit_config([&](json& j) {
            j["model_type"] = "deepseek_v2";
            j["scoring_func"] = "softmax";
            j["topk_method"] = "greedy";
            j["norm_topk_prob"] = norm;
            j["rope_interleave"] = false;
        });
        return load();
    };
    {
        const auto m = v2(false);
        EXPECT_EQ(m->hparams().gating_func, runtime::GatingFunc::kSoftmax);
        EXPECT_FLOAT_EQ(m->hparams().expert_weights_scale, 2.5f);
        EXPECT_FALSE(m->hparams().expert_weights_norm);
        EXPECT_LE(m->hparams().n_expert_groups, 1);
        EXPECT_EQ(m->hparams().rope_type, runtime::RopeType::kNeox);
    }
    {
        const auto m = v2(true);
        EXPECT_FLOAT_EQ(m->hparams().expert_weights_scale, 1.f);
        EXPECT_TRUE(m->hparams().expert_weights_norm);
    }
    edit_config([](json& j) {
        j["topk_method"] = "group_limited_greedy";
        j["n_group"] = 4;
    });
    const std::string e = load_error<UnsupportedError>();
    EXPECT_TRUE(has(e, "topk_method") && has(e, "group_limited_greedy") && has(e, "config.json")) << e;
}

TEST_F(HfCheckpointImport, ShardedCheckpointWithIndexGivesTheSameLogits) {
    const auto single = load();
    // The single file stays mapped by `single`: the shards go into a directory of their own.
    const std::vector<StEntry> entries = fixture_entries();
    dir_ = dir_ / "sharded";
    fs::create_directories(dir_);
    fs::copy_file(kFixture / "config.json", dir_ / "config.json");
    std::vector<StEntry> first, second;
    json weight_map = json::object();
    for (size_t i = 0; i < entries.size(); ++i) {
        const bool in_first = i % 2 == 0;
        (in_first ? first : second).push_back(entries[i]);
        weight_map[entries[i].name] =
            in_first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    }
    write_safetensors(dir_ / "model-00001-of-00002.safetensors", first);
    write_safetensors(dir_ / "model-00002-of-00002.safetensors", second);
    std::ofstream(dir_ / "model.safetensors.index.json")
        << json{{"metadata", json::object()}, {"weight_map", weight_map}};
    const auto sharded = load();
    ASSERT_EQ(sharded->gguf().tensors().size(), single->gguf().tensors().size());
    const std::vector<int32_t> prompt = {1, 17, 42, 5, 99};
    runtime::Session a(*single, 32), b(*sharded, 32);
    EXPECT_EQ(a.eval(prompt), b.eval(prompt));
}

TEST_F(HfCheckpointImport, MissingSafetensorsNamesDirectory) {
    fs::remove(dir_ / "model.safetensors");
    const std::string e = load_error<FormatError>();
    EXPECT_TRUE(has(e, dir_.string()) && has(e, "model.safetensors")) << e;
}

}  // namespace
}  // namespace moerig
