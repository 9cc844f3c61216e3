// `moerig run` as people run it: one card, and sharded over a rig's virtual cards with --rig. The sharded
// run must generate the same greedy tokens as the one-card run, and report every card's memory and traffic.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/common/cli_run.h"

using moerig::testing::run_moerig;

namespace {

const std::string kModel = std::string(MOERIG_TEST_DATA) + "/models/qwen3moe-f32.gguf";

nlohmann::json run_json(const std::string& extra) {
    const auto r = run_moerig("run -m " + kModel + " -p 'The quick brown fox' -n 12 --temp 0 --json " + extra);
    EXPECT_EQ(r.code, 0) << r.err;
    return nlohmann::json::parse(r.out);
}

}  // namespace

TEST(RunCli, ShardedRunOnVirtualCardsGivesTheOneCardTokensAndPerCardStats) {
    const auto one = run_json("");
    ASSERT_EQ(one["tokens"].size(), 12u);
    for (const std::string strategy : {"pipeline", "expert-parallel"}) {
        const auto sharded = run_json("--rig rtx3060-6x-gen3x4 --emulate-links --strategy " + strategy);
        EXPECT_EQ(sharded["tokens"], one["tokens"]) << strategy;
        EXPECT_EQ(sharded["prompt_tokens"], one["prompt_tokens"]);
        ASSERT_EQ(sharded["cards"].size(), 6u);  // one entry per card of the rig, used or not
        size_t sent = 0, received = 0, cards_used = 0;
        for (const auto& c : sharded["cards"]) {
            EXPECT_LE(c["peak_bytes"].get<size_t>(), c["budget_bytes"].get<size_t>()) << c["name"];
            EXPECT_GE(c["used_bytes"].get<size_t>(), c["weights_bytes"].get<size_t>()) << c["name"];
            sent += c["bytes_sent"].get<size_t>();
            received += c["bytes_received"].get<size_t>();
            cards_used += c["predicted_bytes"].get<size_t>() > 0;
        }
        EXPECT_EQ(sent, received) << strategy;  // every byte sent between cards is received by one
        if (strategy == "expert-parallel") {
            // Every card holds experts of every MoE layer, so every card holds weights and tokens cross cards.
            EXPECT_EQ(cards_used, 6u);
            EXPECT_GT(sent, 0u);
        } else {
            // The planner's layer split keeps this small model on as few cards as its cost model prefers.
            EXPECT_GE(cards_used, 1u);
        }
    }
}

TEST(RunCli, UnknownRigIsOneClearLineAndExitCode2) {
    const auto r = run_moerig("run -m " + kModel + " -p hi -n 2 --rig no-such-rig");
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("no-such-rig"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(RunCli, CorruptModelFileNamesTheFileAndExitCode2) {
    const auto path = std::filesystem::temp_directory_path() / ("moerig_bad_" + std::to_string(::getpid()) + ".gguf");
    {
        std::ofstream f(path, std::ios::binary);
        f << "GGUF\x03";  // truncated header
    }
    const auto r = run_moerig("run -m " + path.string() + " -p hi -n 2");
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find(path.filename().string()), std::string::npos) << r.err;
    std::filesystem::remove(path);
}
