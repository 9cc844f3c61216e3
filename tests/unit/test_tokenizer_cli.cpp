// The `moerig tokenize` and `moerig inspect` commands on the fixture vocabularies: ids equal llama.cpp's,
// the metadata summary counts arrays, and a bad file is one error line with a non-zero exit code.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/common/cli_run.h"

namespace {

const std::string kDir = std::string(MOERIG_TEST_DATA) + "/tokenizer/";

// Runs the CLI; returns exit code and stdout.
std::pair<int, std::string> run(const std::string& args) {
    const auto r = moerig::testing::run_moerig(args);
    return {r.code, r.out};
}

nlohmann::json truth(const std::string& name) {
    std::ifstream in(kDir + name + ".json");
    return nlohmann::json::parse(in);
}

}  // namespace

TEST(TokenizeCli, JsonIdsEqualLlamaCppWithAndWithoutBos) {
    for (const char* name : {"llama-spm", "qwen2"}) {
        const auto t = truth(name);
        const auto& c = t["cases"][2];  // "Hello world"
        ASSERT_EQ(c["text"], "Hello world");
        auto [rc, out] = run("tokenize -m " + kDir + name + ".gguf -p 'Hello world' --json");
        ASSERT_EQ(rc, 0) << name;
        EXPECT_EQ(nlohmann::json::parse(out)["ids"], c["ids_add_special"]) << name;
        std::tie(rc, out) = run("tokenize -m " + kDir + name + ".gguf -p 'Hello world' --json --no-bos");
        ASSERT_EQ(rc, 0) << name;
        EXPECT_EQ(nlohmann::json::parse(out)["ids"], c["ids"]) << name;
    }
}

TEST(InspectCli, JsonSummarisesTokenizerArraysAndCountsTensors) {
    const auto t = truth("gpt-2");
    auto [rc, out] = run("inspect " + kDir + "gpt-2.gguf --json");
    ASSERT_EQ(rc, 0);
    const auto j = nlohmann::json::parse(out);
    EXPECT_EQ(j["format"], "gguf");
    EXPECT_EQ(j["metadata"]["tokenizer.ggml.tokens"]["count"], t["n_vocab"]);
    EXPECT_EQ(j["metadata"]["tokenizer.ggml.model"], "gpt2");
    EXPECT_EQ(j["totals"]["tensors"], j["tensors"].size());
}

TEST(InspectCli, BadFileIsANonZeroExit) {
    auto [rc, out] = run("inspect " + kDir + "README.md");
    EXPECT_EQ(rc, 2);
    EXPECT_TRUE(out.empty()) << out;
}
