// Model and card catalogs: every catalog model loads, its computed total and active parameter counts match
// the published figures, names resolve through aliases, and every error names the input and close matches.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>

#include "kernels/error.h"
#include "sharding/accounting.h"
#include "sharding/catalog.h"
#include "sharding/suggest.h"
#include "tests/common/error_text.h"

using moerig::ConfigError;
using namespace moerig::sharding;

namespace {

const std::string kData = std::string(MOERIG_TEST_DATA) + "/planner";

}  // namespace

TEST(Catalog, ListsEveryModelOfTheReference) {
    const auto names = catalog_model_names();
    const std::set<std::string> have(names.begin(), names.end());
    for (const char* n :
         {"deepseek-v3", "deepseek-r1", "deepseek-v2-lite", "mixtral-8x7b", "mixtral-8x22b", "qwen3-30b-a3b",
          "qwen3-235b-a22b", "qwen1.5-moe-a2.7b", "olmoe-1b-7b", "gpt-oss-20b", "gpt-oss-120b"}) {
        EXPECT_TRUE(have.count(n)) << n;
    }
}

TEST(Catalog, ComputedTotalAndActiveParamsMatchPublishedWithinTwoPercent) {
    for (const auto& name : catalog_model_names()) {
        const ModelSpec spec = load_catalog_model(name);
        ASSERT_GT(spec.published_total_params, 0) << name;
        ASSERT_GT(spec.published_active_params, 0) << name;
        const ModelAccount a = account_model(spec, parse_quant_mix("BF16"));
        const double total_err = std::abs(a.total_params - spec.published_total_params) / spec.published_total_params;
        EXPECT_LT(total_err, 0.02) << name << ": computed " << a.total_params;
        // A figure published to fewer digits (active_precision) may be off by half its last unit on top.
        const double slack = 0.5 * spec.published_active_precision / spec.published_active_params;
        const double active_err =
            std::abs(a.active_params - spec.published_active_params) / spec.published_active_params;
        EXPECT_LT(active_err, 0.02 + slack) << name << ": computed " << a.active_params;
        EXPECT_LT(a.active_params, a.total_params) << name;
    }
}

TEST(Catalog, DeepSeekR1HasTheArchitectureOfV3) {
    const auto v3 = account_model(load_catalog_model("deepseek-v3"), parse_quant_mix("Q4_K_M"));
    const auto r1 = account_model(load_catalog_model("deepseek-r1"), parse_quant_mix("Q4_K_M"));
    EXPECT_EQ(v3.total_bytes, r1.total_bytes);
    EXPECT_EQ(v3.tensors.size(), r1.tensors.size());
}

TEST(Catalog, ResolvesAliasesIgnoringCaseAndSeparators) {
    EXPECT_EQ(load_catalog_model("Mixtral_8x7B").name, "mixtral-8x7b");
    EXPECT_EQ(load_catalog_model("dsv3").name, "deepseek-v3");
    EXPECT_EQ(load_catalog_model("QWEN3-30B").name, "qwen3-30b-a3b");
}

TEST(Catalog, UnknownModelErrorListsCloseMatches) {
    const std::string msg = moerig::testing::error_text([] { load_catalog_model("mixtral-8x7"); });
    EXPECT_NE(msg.find("unknown model 'mixtral-8x7'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("mixtral-8x7b"), std::string::npos) << msg;
    const std::string far = moerig::testing::error_text([] { load_catalog_model("llama-3-70b-dense"); });
    EXPECT_NE(far.find("unknown model"), std::string::npos) << far;
}

TEST(Catalog, ModelYamlMissingFieldNamesFileAndField) {
    const std::string msg = moerig::testing::error_text([] { load_model_yaml(kData + "/models/missing-hidden.yaml"); });
    EXPECT_NE(msg.find("missing-hidden.yaml"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'hidden'"), std::string::npos) << msg;
}

TEST(Catalog, ModelYamlBadEnumNamesLineAndValue) {
    const std::string msg =
        moerig::testing::error_text([] { load_model_yaml(kData + "/models/bad-attention-kind.yaml"); });
    EXPECT_NE(msg.find("bad-attention-kind.yaml:8: attention.kind"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'mqa'"), std::string::npos) << msg;
}

TEST(Catalog, ConfigDirFollowsEnvironment) {
    const char* env = std::getenv("MOERIG_CONFIG_DIR");
    const std::optional<std::string> saved_env = env ? std::optional<std::string>(env) : std::nullopt;
    ::unsetenv("MOERIG_CONFIG_DIR");
    EXPECT_EQ(config_dir(), std::filesystem::path(MOERIG_SOURCE_DIR) / "configs");
    ::setenv("MOERIG_CONFIG_DIR", "/nonexistent/moerig-configs", 1);
    EXPECT_EQ(config_dir(), std::filesystem::path("/nonexistent/moerig-configs"));
    const std::string msg = moerig::testing::error_text([] { load_catalog_model("mixtral-8x7b"); });
    EXPECT_NE(msg.find("/nonexistent/moerig-configs/models"), std::string::npos) << msg;
    if (saved_env) {
        ::setenv("MOERIG_CONFIG_DIR", saved_env->c_str(), 1);
    } else {
        ::unsetenv("MOERIG_CONFIG_DIR");
    }
}

TEST(Cards, CatalogHasUsableMemoryAndRatesForEveryCard) {
    const auto cat = CardCatalog::load_default();
    ASSERT_GE(cat.cards().size(), 15u);
    for (const auto& c : cat.cards()) {
        EXPECT_GT(c.usable_bytes(), 3ull << 30) << c.name;
        EXPECT_GE(c.reserve_bytes, 300ull << 20) << c.name;
        EXPECT_LE(c.reserve_bytes, 500ull << 20) << c.name;
        EXPECT_GT(c.mem_bw_bytes_per_s, 1e11) << c.name;
        EXPECT_GT(c.fp32_flops, 1e12) << c.name;
        EXPECT_GE(c.compute_capability, 6.0) << c.name;
    }
    const auto& p106 = cat.find("p106");
    EXPECT_EQ(p106.name, "P106-100");
    EXPECT_EQ(p106.vram_bytes, 6ull << 30);
    EXPECT_DOUBLE_EQ(p106.mem_bw_bytes_per_s, 192e9);
    EXPECT_EQ(cat.find("rtx-3060-12gb").name, "RTX 3060 12GB");
}

TEST(Cards, UnknownCardErrorListsCloseMatches) {
    const auto cat = CardCatalog::load_default();
    const std::string msg = moerig::testing::error_text([&] { cat.find("P160-100"); });
    EXPECT_NE(msg.find("unknown card 'P160-100'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("P106-100"), std::string::npos) << msg;
}

TEST(Suggest, EditDistanceAndRanking) {
    EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
    EXPECT_EQ(edit_distance("Q4_K_M", "q4_k_m"), 0u);
    EXPECT_EQ(edit_distance("", "abc"), 3u);
    const auto m = close_matches("qwen3-30b", {"qwen3-235b-a22b", "qwen3-30b-a3b", "olmoe-1b-7b"});
    ASSERT_FALSE(m.empty());
    EXPECT_EQ(m.front(), "qwen3-30b-a3b");
    EXPECT_TRUE(close_matches("zzzzzz", {"mixtral-8x7b"}).empty());
    EXPECT_EQ(did_you_mean("zzzzzz", {"mixtral-8x7b"}), "");
}
