// `moerig plan`: plan a model on a rig for a workload and print the table (or --json), optionally writing
// the plan file (--out) and an HTML picture (--html). Exit code 2 when the model does not fit.
// Also writes synthetic routing traces (--synth-trace) and re-reads saved plans (--load).
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

#include "kernels/error.h"
#include "sharding/accounting.h"
#include "sharding/plan_io.h"
#include "sharding/planner.h"
#include "sharding/quant_mix.h"
#include "sharding/report_html.h"
#include "sharding/report_json.h"
#include "sharding/report_text.h"
#include "sharding/rig.h"
#include "sharding/trace.h"
#include "tools/moerig/command.h"

namespace moerig::cli {
namespace {

// Built-in default: a full-size MoE that fills a 12-card mining rig meaningfully.
constexpr const char* kDefaultModel = "qwen3-235b-a22b";
constexpr const char* kDefaultQuant = "Q2_K";
constexpr const char* kDefaultRig = "p104-12x-gen1x1";

struct PlanArgs {
    std::string model = kDefaultModel;
    std::string rig = kDefaultRig;
    std::string quant;
    sharding::Workload workload;
    std::string strategy = "auto";
    bool spill = false;
    bool no_replicate = false;
    std::string trace;
    bool json = false;
    std::string out;
    std::string html;
    std::string load;
    std::string synth_trace;
    uint64_t trace_seed = 1;
    uint64_t trace_sample_seed = 1;
    double trace_skew = 1.0;
    double trace_drift = 0.0;
    uint64_t trace_tokens = 1024;
};

bool is_gguf(const std::string& s) {
    return s.size() > 5 && s.compare(s.size() - 5, 5, ".gguf") == 0;
}

sharding::ModelAccount load_account(const PlanArgs& a) {
    if (a.quant.empty()) {
        return is_gguf(a.model) || a.model != kDefaultModel
                   ? sharding::load_model(a.model)
                   : sharding::load_model(a.model, sharding::parse_quant_mix(kDefaultQuant));
    }
    MOERIG_CHECK(!is_gguf(a.model), ConfigError, "--quant {}: a GGUF file's tensor types are fixed; drop --quant",
                 a.quant);
    return sharding::load_model(a.model, sharding::parse_quant_mix(a.quant));
}

int write_synthetic_trace(const PlanArgs& a) {
    const sharding::ModelAccount model = load_account(a);
    const auto& spec = model.spec;
    MOERIG_CHECK(spec.num_experts > 0, ConfigError, "--synth-trace: model {} has no routed experts", spec.name);
    sharding::SyntheticTraceSpec s;
    s.model = spec.name;
    s.num_layers = spec.num_layers;
    s.num_dense_layers = spec.num_leading_dense;
    s.num_experts = spec.num_experts;
    s.num_experts_used = spec.num_experts_used;
    s.num_tokens = a.trace_tokens;
    s.skew = a.trace_skew;
    s.popularity_seed = a.trace_seed;
    s.sample_seed = a.trace_sample_seed;
    s.drift = a.trace_drift;
    sharding::write_trace(sharding::synthetic_trace(s), a.synth_trace);
    std::printf("wrote %s: %u layers x %u experts, %llu tokens, skew %.2f\n", a.synth_trace.c_str(), s.num_layers,
                s.num_experts, static_cast<unsigned long long>(s.num_tokens), s.skew);
    return 0;
}

int show_saved_plan(const PlanArgs& a) {
    const proto::Plan plan = sharding::read_plan(a.load);
    if (!a.html.empty()) sharding::write_plan_html(plan, a.html);
    if (!a.out.empty()) sharding::write_plan(plan, a.out);
    if (a.json) {
        std::cout << sharding::plan_report_json(plan, std::nullopt).dump(2) << "\n";
    } else {
        std::cout << (plan.fits() ? sharding::format_plan_text(plan) : std::string("saved plan does not fit\n"));
    }
    return plan.fits() ? 0 : 2;
}

int run_plan(const PlanArgs& a) {
    if (!a.synth_trace.empty()) return write_synthetic_trace(a);
    if (!a.load.empty()) return show_saved_plan(a);
    a.workload.validate();
    sharding::PlanOptions options;
    options.strategy = sharding::parse_strategy_choice(a.strategy);
    options.allow_host_spill = a.spill;
    options.replicate_hot_experts = !a.no_replicate;
    const sharding::ModelAccount model = load_account(a);
    const sharding::RigSpec rig = sharding::load_rig(a.rig);
    std::optional<sharding::RoutingTrace> trace;
    if (!a.trace.empty()) trace = sharding::read_trace(a.trace);
    sharding::RequantFn requant;
    if (!is_gguf(a.model)) {
        requant = [&](const std::string& quant) -> std::optional<sharding::ModelAccount> {
            return sharding::load_model(a.model, sharding::parse_quant_mix(quant));
        };
    }
    const sharding::PlanResult result =
        sharding::plan(model, rig, a.workload, options, trace ? &*trace : nullptr, requant);
    if (!a.out.empty()) sharding::write_plan(result.plan, a.out);
    if (!a.html.empty()) sharding::write_plan_html(result.plan, a.html);
    if (a.json) {
        std::cout << sharding::plan_report_json(result.plan, result.advice).dump(2) << "\n";
    } else if (result.fits()) {
        std::cout << sharding::format_plan_text(result.plan);
    } else {
        std::cerr << sharding::format_no_fit_text(result.plan, *result.advice);
    }
    return result.fits() ? 0 : 2;
}

const Registrar kRegistrar(
    "plan", "Plan a model on a rig: stages, expert placement, memory per card and predicted speed",
    [](CLI::App& sub) -> std::function<int()> {
        auto args = std::make_shared<PlanArgs>();
        sub.add_option("--model", args->model,
                       "Catalog model name, model YAML, HF config.json (or its folder) or .gguf file")
            ->capture_default_str();
        sub.add_option("--rig", args->rig, "Catalog rig name (configs/rigs) or rig YAML file")->capture_default_str();
        sub.add_option("--quant", args->quant,
                       "Quantisation mix for catalog/HF models: F16 BF16 Q8_0 Q6_K Q5_K_M Q4_K_M Q3_K_M Q2_K MXFP4 "
                       "(default: Q2_K for the built-in default, else the model's native precision)");
        sub.add_option("--context", args->workload.context, "KV-cache tokens per sequence")->capture_default_str();
        sub.add_option("--batch", args->workload.batch, "Concurrent sequences in decode")->capture_default_str();
        sub.add_option("--prompt", args->workload.prompt, "Prompt tokens per request (prefill, time to first token)")
            ->capture_default_str();
        sub.add_option("--gen", args->workload.gen, "Generated tokens per request")->capture_default_str();
        sub.add_option("--trace", args->trace, "Routing trace file to balance experts on (format: docs/plan.md)");
        sub.add_option("--strategy", args->strategy, "auto | pipeline | ep | hybrid (auto: chosen by the cost model)")
            ->capture_default_str();
        sub.add_flag("--spill", args->spill, "Allow cold experts to stay in host RAM when the cards cannot hold them");
        sub.add_flag("--no-replicate", args->no_replicate, "Do not replicate hot experts into spare memory");
        sub.add_flag("--json", args->json, "Print one JSON object instead of the table");
        sub.add_option("--out", args->out,
                       "Write the plan: plan.pb (binary), plan.txtpb (text), plan.yaml or plan.json");
        sub.add_option("--html", args->html, "Write a self-contained HTML report (inline SVG) to this file");
        sub.add_option("--load", args->load, "Print a saved plan file instead of planning (with --json/--html/--out)");
        sub.add_option("--synth-trace", args->synth_trace,
                       "Write a synthetic Zipf-skewed routing trace for --model to this file and exit");
        sub.add_option("--trace-seed", args->trace_seed, "Synthetic trace: expert popularity seed")
            ->capture_default_str();
        sub.add_option("--trace-sample-seed", args->trace_sample_seed, "Synthetic trace: token sampling seed")
            ->capture_default_str();
        sub.add_option("--trace-skew", args->trace_skew, "Synthetic trace: Zipf exponent of expert popularity")
            ->capture_default_str();
        sub.add_option("--trace-drift", args->trace_drift, "Synthetic trace: fraction of popularity ranks re-drawn")
            ->capture_default_str();
        sub.add_option("--trace-tokens", args->trace_tokens, "Synthetic trace: tokens routed per layer")
            ->capture_default_str();
        return [args] { return run_plan(*args); };
    },
    10);

}  // namespace
}  // namespace moerig::cli
