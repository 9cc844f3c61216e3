// Top-level plan(): problem -> strategy choice -> proto::Plan, with validation of the chosen layout and
// advice when the model does not fit.
#include "sharding/planner.h"

#include <fmt/ranges.h>

#include "kernels/error.h"

namespace moerig::sharding {

proto::Plan to_proto(const PlanProblem& problem, const Layout& layout, const Prediction& prediction) {
    proto::Plan plan;
    plan.set_format_version(kPlanFormatVersion);
    *plan.mutable_model() = problem.model_spec;
    *plan.mutable_rig() = problem.rig_spec;
    *plan.mutable_workload() = problem.workload.to_proto();
    plan.set_strategy(layout.strategy);
    plan.set_group_size(layout.group_size);
    plan.set_fits(layout.feasible);
    std::vector<proto::CardPlan*> cards;
    for (uint32_t c = 0; c < problem.num_cards(); ++c) {
        proto::CardPlan* card = plan.add_cards();
        card->set_card_idx(c);
        card->set_name(problem.cards[c].name);
        card->set_kind(problem.cards[c].kind);
        card->set_vram_bytes(problem.cards[c].vram_bytes);
        cards.push_back(card);
    }
    for (uint32_t h = 0; h < problem.hosts.size(); ++h) {
        proto::HostPlan* host = plan.add_hosts();
        host->set_host_idx(h);
        if (h == 0) host->set_embedding_bytes(problem.embedding_bytes);
    }
    if (!layout.feasible) return plan;
    for (uint32_t g = 0; g < layout.groups.size(); ++g) {
        for (uint32_t c : layout.groups[g]) cards[c]->set_group_idx(g);
    }
    // Stage ranges: the partition makes them contiguous per card.
    std::vector<bool> seen(problem.num_cards(), false);
    for (uint32_t l = 0; l < problem.num_layers(); ++l) {
        proto::CardPlan* card = cards[layout.stage_card[l]];
        if (!seen[layout.stage_card[l]]) {
            card->set_layer_begin(l);
            seen[layout.stage_card[l]] = true;
        }
        card->set_layer_end(l + 1);
    }
    cards[layout.last_card]->set_holds_output(true);
    for (uint32_t l = 0; l < problem.num_layers(); ++l) {
        for (uint32_t e = 0; e < layout.experts[l].size(); ++e) {
            uint32_t replica = 0;
            for (const ExpertCopy& copy : layout.experts[l][e]) {
                proto::ExpertSlot* slot = copy.card_idx == kOnHost
                                              ? plan.mutable_hosts(copy.host_idx)->add_spilled_experts()
                                              : cards[copy.card_idx]->add_experts();
                slot->set_layer(l);
                slot->set_expert(e);
                slot->set_replica(replica++);
                slot->set_load_share(copy.share);
            }
        }
    }
    for (uint32_t h = 0; h < problem.hosts.size(); ++h)
        plan.mutable_hosts(h)->set_spilled_bytes(layout.host_spill_bytes[h]);
    for (uint32_t c = 0; c < problem.num_cards(); ++c) {
        const CardMemory& m = layout.memory[c];
        proto::MemoryBreakdown* mem = cards[c]->mutable_memory();
        mem->set_dense_weights(m.dense);
        mem->set_expert_weights(m.experts);
        mem->set_kv_cache(m.kv);
        mem->set_activations(m.activations);
        mem->set_comm_buffers(m.comm);
        mem->set_reserve(m.reserve);
        mem->set_total(m.total());
        cards[c]->set_kv_tokens(layout.kv_tokens[c]);
        if (!prediction.card_read_bytes.empty()) {
            cards[c]->set_decode_read_bytes(prediction.card_read_bytes[c]);
            cards[c]->set_link_bytes(prediction.card_link_bytes[c]);
        }
    }
    proto::Prediction* p = plan.mutable_predicted();
    p->set_decode_tokens_per_s(prediction.decode_tokens_per_s);
    p->set_decode_tokens_per_s_batch(prediction.decode_tokens_per_s_batch);
    p->set_prefill_tokens_per_s(prediction.prefill_tokens_per_s);
    p->set_ttft_s(prediction.ttft_s);
    p->set_max_context(prediction.max_context);
    p->set_decode_step_s(prediction.decode_step_s);
    p->set_decode_step_s_batch(prediction.decode_step_s_batch);
    p->set_prefill_s(prediction.prefill_s);
    std::vector<std::vector<double>> probs(problem.num_layers());
    for (uint32_t l = 0; l < problem.num_layers(); ++l) probs[l] = problem.layers[l].expert_prob;
    p->set_balance(expert_balance(problem, layout, probs));
    plan.set_decode_microbatches(prediction.decode_microbatches);
    return plan;
}

PlanResult plan(const ModelAccount& model, const RigSpec& rig, const Workload& workload, const PlanOptions& options,
                const RoutingTrace* trace, const RequantFn& requant) {
    PlanResult result;
    result.problem = make_problem(model, rig, workload, options, trace);
    result.chosen = choose_strategy(result.problem);
    const Layout& layout = result.chosen.layout;
    if (layout.feasible) {
        const auto problems = check_layout(result.problem, layout);
        MOERIG_CHECK(problems.empty(), Error, "internal error: the chosen plan breaks invariants: {}",
                     fmt::join(problems, "; "));
    }
    result.plan = to_proto(result.problem, layout, result.chosen.prediction);
    result.plan.mutable_workload()->set_kv_cache_dtype(std::string(dtype_name(options.kv_cache_dtype)));
    if (trace) result.plan.set_trace_name(trace->model);
    if (!layout.feasible) {
        result.advice = explain_no_fit(model, rig, workload, options, trace, layout.infeasible_reason, requant);
        result.plan.add_notes(result.advice->reason);
        for (const auto& s : result.advice->suggestions) result.plan.add_notes(s);
    } else if (options.allow_host_spill) {
        uint64_t spilled = 0;
        for (uint64_t b : layout.host_spill_bytes) spilled += b;
        if (spilled > 0) {
            result.plan.add_notes(fmt::format("{:.1f} GB of cold experts stay in host RAM", spilled / 1e9));
        }
    }
    return result;
}

}  // namespace moerig::sharding
