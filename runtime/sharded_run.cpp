// run_sharded: model + rig (or plan file) -> ShardLayout -> ShardedModel -> prefill, sampled decode,
// per-card stats. The planner decides the layout; this file only wires it to the executor.
#include "runtime/sharded_run.h"

#include <chrono>

#include "formats/gguf.h"
#include "kernels/error.h"
#include "sharding/accounting.h"
#include "sharding/cost_coefficients.h"
#include "sharding/plan_io.h"
#include "sharding/planner.h"
#include "sharding/rig.h"

namespace moerig::runtime {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

/// predicted: the plan's decode tokens/s for one sequence, or for all of them when it planned a batch.
ShardLayout layout_from(const proto::Plan& plan, const Model& model, std::string* strategy, double* predicted,
                        int64_t batch = 1) {
    if (strategy) *strategy = std::string(sharding::strategy_name(plan.strategy()));
    if (predicted) {
        *predicted = batch > 1 ? plan.predicted().decode_tokens_per_s_batch() : plan.predicted().decode_tokens_per_s();
    }
    return ShardLayout::from_plan(plan, model.hparams());
}

/// The fitting plan of a model on a rig at this workload, or OutOfMemoryError.
proto::Plan plan_model(const Model& model, const std::string& rig, int64_t context, int64_t prompt_tokens,
                       int64_t gen_tokens, const std::string& strategy_choice, bool allow_host_spill, int64_t batch,
                       DType kv_dtype) {
    const sharding::ModelAccount account = sharding::account_gguf(model.gguf());
    const sharding::RigSpec rig_spec = sharding::load_rig(rig);
    sharding::Workload workload;
    workload.batch = static_cast<uint32_t>(std::max<int64_t>(1, batch));
    workload.context = static_cast<uint32_t>(context);
    workload.prompt = static_cast<uint32_t>(std::max<int64_t>(1, prompt_tokens));
    workload.gen = static_cast<uint32_t>(std::max<int64_t>(1, gen_tokens));
    sharding::PlanOptions options;
    options.strategy = sharding::parse_strategy_choice(strategy_choice);
    options.allow_host_spill = allow_host_spill;
    options.kv_cache_dtype = check_kv_dtype(kv_dtype, "run_sharded");  // what the virtual cards' KvCache holds
    const sharding::PlanResult result = sharding::plan(account, rig_spec, workload, options);
    MOERIG_CHECK(result.fits(), OutOfMemoryError, "{} does not fit on rig '{}' with a context of {} tokens{}",
                 model.gguf().path(), rig, context,
                 result.plan.notes_size() ? ": " + result.plan.notes(0) : std::string());
    return result.plan;
}

}  // namespace

ShardedOptions plan_step_limits(const proto::Plan& plan, ShardedOptions options) {
    // sharding/partition.cpp card_buffers: the batch, or a prefill ubatch of the prompt.
    const uint32_t batch = std::max<uint32_t>(plan.workload().batch(), 1);
    options.max_step_rows = std::max(batch, std::min(plan.workload().prompt(), sharding::coeff::kPrefillUbatchTokens));
    options.max_logits_rows = batch;
    return options;
}

DType plan_kv_dtype(const proto::Plan& plan, const std::string& source) {
    const std::string& name = plan.workload().kv_cache_dtype();
    if (name.empty()) return DType::F16;
    const std::optional<DType> dtype = dtype_from_name(name);
    MOERIG_CHECK(dtype.has_value(), FormatError, "{}: workload.kv_cache_dtype '{}' is not a known type", source, name);
    return check_kv_dtype(*dtype, source + ": workload.kv_cache_dtype");
}

ShardLayout plan_layout(const Model& model, const std::string& rig, int64_t context, int64_t prompt_tokens,
                        int64_t gen_tokens, const std::string& strategy_choice, std::string* strategy,
                        double* predicted_tokens_per_s, bool allow_host_spill, int64_t batch, DType kv_dtype) {
    const proto::Plan plan =
        plan_model(model, rig, context, prompt_tokens, gen_tokens, strategy_choice, allow_host_spill, batch, kv_dtype);
    return layout_from(plan, model, strategy, predicted_tokens_per_s, batch);
}

ShardedRunResult run_sharded(const ShardedRunRequest& req) {
    MOERIG_CHECK(req.batch >= 1, ConfigError, "run_sharded: the batch must be at least 1 sequence, got {}", req.batch);
    std::vector<std::vector<int32_t>> prompts = req.prompts;
    if (prompts.empty()) prompts.assign(static_cast<size_t>(req.batch), req.prompt);
    size_t longest = 0;
    for (size_t s = 0; s < prompts.size(); ++s) {
        MOERIG_CHECK(!prompts[s].empty(), ConfigError, "run_sharded: the prompt of sequence {} is empty", s);
        longest = std::max(longest, prompts[s].size());
    }
    MOERIG_CHECK(!req.rig.empty() || !req.plan_path.empty(), ConfigError,
                 "run_sharded: give a rig (--rig) or a plan (--plan)");
    const auto num_seqs = static_cast<int>(prompts.size());
    const int64_t context = req.context > 0 ? req.context : static_cast<int64_t>(longest) + std::max(req.max_tokens, 1);
    ModelOptions model_options;
    model_options.num_threads = 1;
    model_options.context = context;
    model_options.progress = false;
    auto model = Model::load(req.model_path, model_options);

    ShardedRunResult result;
    const proto::Plan plan = req.plan_path.empty() ? plan_model(*model, req.rig, context, static_cast<int64_t>(longest),
                                                                req.max_tokens, req.strategy, req.allow_host_spill,
                                                                num_seqs, req.kv_dtype.value_or(DType::F32))
                                                   : sharding::read_plan(req.plan_path);
    // The cards hold the KV type the plan counted, so that what they charge is what it predicted.
    result.kv_dtype = req.plan_path.empty() ? req.kv_dtype.value_or(DType::F32) : plan_kv_dtype(plan, req.plan_path);
    MOERIG_CHECK(!req.kv_dtype || *req.kv_dtype == result.kv_dtype, ConfigError,
                 "{}: the plan counts a {} KV cache; run it with that type (or plan again for {})", req.plan_path,
                 dtype_name(result.kv_dtype), dtype_name(*req.kv_dtype));
    ShardLayout layout = layout_from(plan, *model, &result.strategy, &result.predicted_decode_tokens_per_s, num_seqs);
    // Steps run in ubatches of the rows the plan reserved buffers for (a prompt longer than the plan's runs in
    // several), with logits for one row per sequence of the plan's batch at a time.
    ShardedOptions options = plan_step_limits(plan);
    options.context = context;
    options.num_slots = num_seqs;
    options.threads_per_card = req.threads_per_card;
    options.emulate_links = req.emulate_links;
    options.sleep_links = req.sleep_links;
    options.quantize_8bit = req.quantize_8bit;
    options.kv_dtype = result.kv_dtype;
    options.card_experts = req.card_experts;
    ShardedModel sharded(*model, std::move(layout), options);  // refuses over-budget cards before loading

    // Every sequence has its own sampler (same parameters, so the same seed: equal prompts sample alike).
    std::vector<Sampler> samplers(prompts.size(), Sampler(req.sampler));
    std::vector<SeqTokens> entries;
    for (int s = 0; s < num_seqs; ++s) {
        for (int32_t t : prompts[s]) samplers[s].accept(t);
        entries.push_back(SeqTokens{.slot_idx = s, .tokens = prompts[s]});
    }
    auto start = std::chrono::steady_clock::now();
    std::vector<std::vector<float>> logits = sharded.eval(entries);  // all prompts in one step
    result.prefill_s = seconds_since(start);
    start = std::chrono::steady_clock::now();
    result.sequences.assign(prompts.size(), {});
    int64_t num_decoded = 0;  // tokens that came out of decode steps (the first of each is the prefill's)
    for (int i = 0; i < req.max_tokens && !entries.empty(); ++i) {
        std::vector<SeqTokens> next_entries;
        for (size_t e = 0; e < entries.size(); ++e) {
            const int s = entries[e].slot_idx;
            const int32_t next = samplers[s].sample(logits[e]);
            samplers[s].accept(next);
            if (i > 0) ++num_decoded;
            // As the one-card generate(): an end-of-generation token ends the sequence and is not part of it.
            if (req.stop_at_eog && model->hparams().is_eog(next)) continue;
            result.sequences[s].push_back(next);
            next_entries.push_back(SeqTokens{.slot_idx = s, .tokens = std::span(&result.sequences[s].back(), 1)});
        }
        entries = std::move(next_entries);
        if (entries.empty() || i + 1 == req.max_tokens) break;
        logits = sharded.eval(entries);
    }
    result.decode_s = seconds_since(start);
    result.tokens = result.sequences.front();
    if (num_decoded > 0 && result.decode_s > 0) {
        result.decode_tokens_per_s = static_cast<double>(num_decoded) / result.decode_s;
    }
    result.cards = sharded.card_stats();
    result.modelled_link_s = sharded.modelled_s();
    return result;
}

}  // namespace moerig::runtime
