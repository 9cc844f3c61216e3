// `moerig plan` as people and scripts run it: the built binary (MOERIG_CLI) with --json, --out, --html,
// --help, and exit code 2 with one clear line for every kind of bad input or a model that does not fit.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/common/cli_run.h"

namespace {

using ::moerig::testing::CliRun;

std::string temp_path(const std::string& name) {
    return (std::filesystem::temp_directory_path() / ("moerig_cli_" + std::to_string(::getpid()) + "_" + name))
        .string();
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

CliRun run_cli(const std::string& args) {
    return ::moerig::testing::run_moerig(args);
}

size_t count_lines(const std::string& s) {
    return std::count(s.begin(), s.end(), '\n');
}

}  // namespace

TEST(PlanCli, DefaultPlanFitsAndPrintsATable) {
    const CliRun r = run_cli("plan");
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("gpu0"), std::string::npos);
    EXPECT_NE(r.out.find("predicted: decode"), std::string::npos);
}

TEST(PlanCli, JsonHasEveryDocumentedKey) {
    const CliRun r = run_cli("plan --model olmoe-1b-7b --quant Q4_K_M --rig p106-8x-gen1x1 --batch 4 --json");
    ASSERT_EQ(r.code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_TRUE(j.at("fits").get<bool>());
    for (const char* key : {"name", "total_params", "active_params"}) EXPECT_TRUE(j.at("model").contains(key)) << key;
    ASSERT_EQ(j.at("cards").size(), 8u);
    for (const char* key : {"name", "vram_bytes", "used_bytes", "weights_bytes", "kv_bytes", "layers", "num_experts"}) {
        EXPECT_TRUE(j.at("cards")[0].contains(key)) << key;
    }
    for (const char* key :
         {"decode_tokens_per_s", "decode_tokens_per_s_batch", "prefill_tokens_per_s", "ttft_s", "max_context"}) {
        EXPECT_TRUE(j.at("predicted").contains(key)) << key;
    }
    EXPECT_TRUE(j.at("strategy").is_string());
    EXPECT_EQ(j.at("workload").at("batch"), 4);
}

TEST(PlanCli, DoesNotFitExitsTwoSayingByHowMuchAndWhatWouldFit) {
    const CliRun r = run_cli("plan --model deepseek-v3 --quant Q4_K_M --rig p106-8x-gen1x1");
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("over by"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("more P106-100"), std::string::npos) << r.err;
    const CliRun j = run_cli("plan --model deepseek-v3 --quant Q4_K_M --rig p106-8x-gen1x1 --json");
    EXPECT_EQ(j.code, 2);
    const auto doc = nlohmann::json::parse(j.out);
    EXPECT_FALSE(doc.at("fits").get<bool>());
    EXPECT_FALSE(doc.at("advice").at("suggestions").empty());
}

TEST(PlanCli, BadInputsExitTwoWithOneLine) {
    for (const char* args :
         {"plan --model no-such-model", "plan --rig no-such-rig", "plan --quant Q9_Z", "plan --batch 0",
          "plan --prompt 5000", "plan --strategy sideways", "plan --trace /nonexistent.trace", "plan --out plan.docx",
          "plan --load /nonexistent.pb", "plan --no-such-flag"}) {
        const CliRun r = run_cli(args);
        EXPECT_EQ(r.code, 2) << args;
        EXPECT_EQ(r.out, "") << args;
        if (std::string(args) != "plan --no-such-flag") {
            EXPECT_EQ(count_lines(r.err), 1u) << args << ": " << r.err;
        }
    }
}

TEST(PlanCli, TraceOfAnotherModelIsRefused) {
    const CliRun r = run_cli(std::string("plan --trace ") + MOERIG_TEST_DATA + "/traces/olmoe-zipf-plan.trace");
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("layers"), std::string::npos) << r.err;
}

TEST(PlanCli, OutRoundTripsThroughLoadInEveryFormat) {
    const std::string base = "plan --model olmoe-1b-7b --quant Q4_K_M --rig mixed-cmp40hx-3070-p104 --trace " +
                             std::string(MOERIG_TEST_DATA) + "/traces/olmoe-zipf-plan.trace";
    const CliRun direct = run_cli(base + " --json");
    ASSERT_EQ(direct.code, 0) << direct.err;
    for (const char* ext : {".pb", ".txtpb", ".yaml"}) {
        const std::string path = temp_path(std::string("plan") + ext);
        ASSERT_EQ(run_cli(base + " --out " + path).code, 0) << ext;
        const CliRun loaded = run_cli("plan --json --load " + path);
        ASSERT_EQ(loaded.code, 0) << ext << loaded.err;
        EXPECT_EQ(nlohmann::json::parse(loaded.out), nlohmann::json::parse(direct.out)) << ext;
        std::filesystem::remove(path);
    }
}

TEST(PlanCli, HtmlWritesOnePageWithSvg) {
    const std::string path = temp_path("report.html");
    const CliRun r = run_cli("plan --model olmoe-1b-7b --quant Q4_K_M --rig p40-4x-gen3x16 --html " + path);
    ASSERT_EQ(r.code, 0) << r.err;
    const std::string html = slurp(path);
    EXPECT_NE(html.find("<svg"), std::string::npos);
    EXPECT_NE(html.find("</html>"), std::string::npos);
    std::filesystem::remove(path);
}

TEST(PlanCli, HelpDocumentsEveryFlag) {
    const CliRun r = run_cli("plan --help");
    EXPECT_EQ(r.code, 0);
    for (const char* flag : {"--model", "--rig", "--quant", "--context", "--batch", "--prompt", "--gen", "--trace",
                             "--json", "--out", "--html", "--strategy", "--spill", "--synth-trace"}) {
        EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
    }
}

TEST(PlanCli, SynthTraceWritesATraceThePlannerAccepts) {
    const std::string path = temp_path("synth.trace");
    ASSERT_EQ(run_cli("plan --model olmoe-1b-7b --synth-trace " + path + " --trace-skew 1.2 --trace-tokens 256").code,
              0);
    const CliRun r = run_cli("plan --model olmoe-1b-7b --quant Q4_K_M --rig p40-4x-gen3x16 --json --trace " + path);
    EXPECT_EQ(r.code, 0) << r.err;
    std::filesystem::remove(path);
}
