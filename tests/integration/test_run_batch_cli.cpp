// `moerig run --rig R --batch N` and `-f PROMPTS`: several sequences decoded together over a rig's virtual cards;
// every sequence gets the greedy tokens a one-card run of its prompt alone generates.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/common/cli_run.h"

using moerig::testing::run_moerig;

namespace {

const std::string kModel = std::string(MOERIG_TEST_DATA) + "/models/qwen3moe-f32.gguf";

nlohmann::json run_json(const std::string& args) {
    const auto r = run_moerig("run -m " + kModel + " -n 6 --temp 0 --json " + args);
    EXPECT_EQ(r.code, 0) << r.err;
    return nlohmann::json::parse(r.out);
}

}  // namespace

TEST(RunBatchCli, PromptsFileSequencesEachGetTheirOneCardTokens) {
    const std::vector<std::string> prompts = {"The quick brown fox", "def add(a, b):", "Mixture of experts", "3 + 4 ="};
    const auto path =
        std::filesystem::temp_directory_path() / ("moerig_prompts_" + std::to_string(::getpid()) + ".txt");
    {
        std::ofstream out(path);
        for (const auto& p : prompts) out << p << "\n";
    }
    const auto batch = run_json("-f " + path.string() + " --rig rtx3060-6x-gen3x4 --strategy expert-parallel");
    std::filesystem::remove(path);
    ASSERT_EQ(batch["sequences"].size(), prompts.size());
    for (size_t s = 0; s < prompts.size(); ++s) {
        const auto one = run_json("-p '" + prompts[s] + "'");
        EXPECT_EQ(batch["sequences"][s]["tokens"], one["tokens"]) << prompts[s];
        EXPECT_EQ(batch["sequences"][s]["prompt"], prompts[s]);
    }
    EXPECT_EQ(batch["tokens"], batch["sequences"][0]["tokens"]);
}

TEST(RunBatchCli, BatchOfOnePromptRepeatsItsTokensInEverySequence) {
    const auto one = run_json("-p 'The quick brown fox'");
    const auto batch = run_json("-p 'The quick brown fox' --rig rtx3060-6x-gen3x4 --batch 3");
    ASSERT_EQ(batch["sequences"].size(), 3u);
    for (const auto& s : batch["sequences"]) EXPECT_EQ(s["tokens"], one["tokens"]);
}

TEST(RunBatchCli, BatchWithoutARigIsOneClearLine) {
    const auto r = run_moerig("run -m " + kModel + " -p hi -n 2 --batch 2");
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("--rig"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}
