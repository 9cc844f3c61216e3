// run_sharded: model + rig (or plan file) -> ShardLayout -> ShardedModel -> prefill, sampled decode,
// per-card stats. The planner decides the layout; this file only wires it to the executor.
#include "runtime/sharded_run.h"

#include <chrono>

#include "formats/gguf.h"
#include "kernels/error.h"
#include "sharding/accounting.h"
#include "sharding/plan_io.h"
#include "sharding/planner.h"
#include "sharding/rig.h"

namespace moerig::runtime {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

ShardLayout layout_from(const proto::Plan& plan, const Model& model, std::string* strategy, double* predicted) {
    if (strategy) *strategy = std::string(sharding::strategy_name(plan.strategy()));
    if (predicted) *predicted = plan.predicted().decode_tokens_per_s();
    return ShardLayout::from_plan(plan, model.hparams());
}

}  // namespace

ShardLayout plan_layout(const Model& model, const std::string& rig, int64_t context, int64_t prompt_tokens,
                        int64_t gen_tokens, const std::string& strategy_choice, std::string* strategy,
                        double* predicted_tokens_per_s) {
    const sharding::ModelAccount account = sharding::account_gguf(model.gguf());
    const sharding::RigSpec rig_spec = sharding::load_rig(rig);
    sharding::Workload workload;
    workload.batch = 1;
    workload.context = static_cast<uint32_t>(context);
    workload.prompt = static_cast<uint32_t>(std::max<int64_t>(1, prompt_tokens));
    workload.gen = static_cast<uint32_t>(std::max<int64_t>(1, gen_tokens));
    sharding::PlanOptions options;
    options.strategy = sharding::parse_strategy_choice(strategy_choice);
    const sharding::PlanResult result = sharding::plan(account, rig_spec, workload, options);
    MOERIG_CHECK(result.fits(), OutOfMemoryError, "{} does not fit on rig '{}' with a context of {} tokens{}",
                 model.gguf().path(), rig, context,
                 result.plan.notes_size() ? ": " + result.plan.notes(0) : std::string());
    return layout_from(result.plan, model, strategy, predicted_tokens_per_s);
}

ShardedRunResult run_sharded(const ShardedRunRequest& req) {
    MOERIG_CHECK(!req.prompt.empty(), ConfigError, "run_sharded: the prompt is empty");
    MOERIG_CHECK(!req.rig.empty() || !req.plan_path.empty(), ConfigError,
                 "run_sharded: give a rig (--rig) or a plan (--plan)");
    const int64_t context =
        req.context > 0 ? req.context : static_cast<int64_t>(req.prompt.size()) + std::max(req.max_tokens, 1);
    ModelOptions model_options;
    model_options.num_threads = 1;
    model_options.context = context;
    model_options.progress = false;
    auto model = Model::load(req.model_path, model_options);

    ShardedRunResult result;
    ShardLayout layout =
        req.plan_path.empty()
            ? plan_layout(*model, req.rig, context, static_cast<int64_t>(req.prompt.size()), req.max_tokens,
                          req.strategy, &result.strategy, &result.predicted_decode_tokens_per_s)
            : layout_from(sharding::read_plan(req.plan_path), *model, &result.strategy,
                          &result.predicted_decode_tokens_per_s);

    ShardedOptions options;
    options.context = context;
    options.threads_per_card = req.threads_per_card;
    options.emulate_links = req.emulate_links;
    options.sleep_links = req.sleep_links;
    options.quantize_8bit = req.quantize_8bit;
    ShardedModel sharded(*model, std::move(layout), options);  // refuses over-budget cards before loading

    Sampler sampler(req.sampler);
    for (int32_t t : req.prompt) sampler.accept(t);
    auto start = std::chrono::steady_clock::now();
    std::vector<float> logits = sharded.eval(req.prompt);
    result.prefill_s = seconds_since(start);
    start = std::chrono::steady_clock::now();
    for (int i = 0; i < req.max_tokens; ++i) {
        const int32_t next = sampler.sample(logits);
        sampler.accept(next);
        result.tokens.push_back(next);
        if ((req.stop_at_eog && model->hparams().is_eog(next)) || i + 1 == req.max_tokens) break;
        logits = sharded.eval(std::span<const int32_t>(&next, 1));
    }
    result.decode_s = seconds_since(start);
    if (result.tokens.size() > 1 && result.decode_s > 0) {
        result.decode_tokens_per_s = static_cast<double>(result.tokens.size() - 1) / result.decode_s;
    }
    result.cards = sharded.card_stats();
    result.modelled_link_s = sharded.modelled_link_s();
    return result;
}

}  // namespace moerig::runtime
