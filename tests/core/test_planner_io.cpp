// Plan files round-trip in every format (binary, text, YAML, JSON), bad plan files fail naming the file,
// and the three reports (text, JSON, HTML) show what they promise.
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "kernels/error.h"
#include "sharding/accounting.h"
#include "sharding/catalog.h"
#include "sharding/plan_io.h"
#include "sharding/planner.h"
#include "sharding/report_html.h"
#include "sharding/report_json.h"
#include "sharding/report_text.h"

using namespace moerig::sharding;

namespace {

const PlanResult& sample_plan() {
    static const PlanResult result = [] {
        const RigSpec rig = load_rig("mixed-cmp40hx-3070-p104");
        const RoutingTrace trace = read_trace(std::string(MOERIG_TEST_DATA) + "/traces/olmoe-zipf-plan.trace");
        return plan(load_model("olmoe-1b-7b", parse_quant_mix("Q4_K_M")), rig, Workload{}, PlanOptions{}, &trace);
    }();
    return result;
}

std::string temp_path(const std::string& name) {
    return (std::filesystem::temp_directory_path() / ("moerig_planio_" + std::to_string(::getpid()) + "_" + name))
        .string();
}

}  // namespace

TEST(PlanIo, EveryFormatRoundTripsThePlanExactly) {
    ASSERT_TRUE(sample_plan().fits());
    for (const char* ext : {".pb", ".txtpb", ".yaml", ".json"}) {
        const std::string path = temp_path(std::string("plan") + ext);
        write_plan(sample_plan().plan, path);
        const moerig::proto::Plan back = read_plan(path);
        std::string diff;
        google::protobuf::util::MessageDifferencer d;
        d.ReportDifferencesToString(&diff);
        EXPECT_TRUE(d.Compare(sample_plan().plan, back)) << ext << ": " << diff.substr(0, 500);
        std::filesystem::remove(path);
    }
}

TEST(PlanIo, UnknownExtensionAndDamagedFilesAreRefusedWithThePath) {
    EXPECT_THROW(plan_format_from_path("plan.docx"), moerig::ConfigError);
    EXPECT_THROW(plan_from_string("\xff\xff\xff", PlanFormat::kBinary, "x.pb"), moerig::FormatError);
    try {
        plan_from_string("format_version: 1\nbogus_field: 3\n", PlanFormat::kText, "x.txtpb");
        FAIL();
    } catch (const moerig::FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("x.txtpb: line 2"), std::string::npos) << e.what();
    }
    EXPECT_THROW(plan_from_string("model: [unclosed", PlanFormat::kYaml, "x.yaml"), moerig::FormatError);
    EXPECT_THROW(plan_from_string("{\"format_version\": \"many\"}", PlanFormat::kJson, "x.json"), moerig::FormatError);
    EXPECT_THROW(plan_from_string("", PlanFormat::kBinary, "empty.pb"), moerig::FormatError);
}

TEST(Reports, TextTableHasOneRowPerCardAndThePredictions) {
    const std::string text = format_plan_text(sample_plan().plan);
    for (const auto& card : sample_plan().plan.cards()) {
        EXPECT_NE(text.find(card.name() + " "), std::string::npos) << card.name();
    }
    EXPECT_NE(text.find("tok/s"), std::string::npos);
    EXPECT_NE(text.find("time to first token"), std::string::npos);
    EXPECT_NE(text.find("max context"), std::string::npos);
    EXPECT_NE(text.find("[#"), std::string::npos);  // VRAM bar
}

TEST(Reports, JsonHasTheDocumentedKeysWithConsistentValues) {
    const auto j = plan_report_json(sample_plan().plan, std::nullopt);
    EXPECT_TRUE(j.at("fits").get<bool>());
    EXPECT_EQ(j.at("model").at("name"), "olmoe-1b-7b");
    EXPECT_GT(j.at("model").at("total_params").get<uint64_t>(), j.at("model").at("active_params").get<uint64_t>());
    ASSERT_EQ(j.at("cards").size(), 6u);
    size_t num_layers = 0;
    for (const auto& c : j.at("cards")) {
        EXPECT_LE(c.at("used_bytes").get<uint64_t>(), c.at("vram_bytes").get<uint64_t>());
        EXPECT_LE(c.at("weights_bytes").get<uint64_t>() + c.at("kv_bytes").get<uint64_t>(),
                  c.at("used_bytes").get<uint64_t>());
        num_layers += c.at("layers").size();
        EXPECT_TRUE(c.contains("num_experts"));
        EXPECT_TRUE(c.contains("name"));
    }
    EXPECT_EQ(num_layers, 16u);
    const auto& p = j.at("predicted");
    for (const char* key : {"decode_tokens_per_s", "decode_tokens_per_s_batch", "prefill_tokens_per_s", "ttft_s"}) {
        EXPECT_GT(p.at(key).get<double>(), 0.0) << key;
    }
    EXPECT_GT(p.at("max_context").get<uint32_t>(), 0u);
    EXPECT_TRUE(j.at("strategy").is_string());
}

TEST(Reports, HtmlIsOneSelfContainedPageWithThreePictures) {
    const std::string html = plan_report_html(sample_plan().plan);
    size_t num_svg = 0;
    for (size_t pos = html.find("<svg"); pos != std::string::npos; pos = html.find("<svg", pos + 1)) ++num_svg;
    EXPECT_EQ(num_svg, 3u);
    EXPECT_EQ(html.find("http://", 0) == std::string::npos ? 0 : html.find("src="), std::string::npos);
    EXPECT_EQ(html.find("<script"), std::string::npos);
    EXPECT_NE(html.find("</html>"), std::string::npos);
}
