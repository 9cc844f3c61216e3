// JSON report of a plan: the stable keys tools read (fits, model, cards, predicted, strategy) plus the
// workload, memory breakdown per card and, when nothing fits, the advice.
#include "sharding/report_json.h"

#include "sharding/workload.h"

namespace moerig::sharding {

nlohmann::json plan_report_json(const proto::Plan& plan, const std::optional<FitAdvice>& advice) {
    using nlohmann::json;
    const auto& m = plan.model();
    json out;
    out["fits"] = plan.fits();
    out["model"] = {{"name", m.name()},
                    {"arch", m.arch()},
                    {"quant", m.quant()},
                    {"total_params", m.total_params()},
                    {"active_params", m.active_params()},
                    {"total_bytes", m.total_bytes()}};
    out["rig"] = plan.rig().name();
    out["workload"] = {{"batch", plan.workload().batch()},
                       {"context", plan.workload().context()},
                       {"prompt", plan.workload().prompt()},
                       {"gen", plan.workload().gen()}};
    out["strategy"] = plan.fits() ? std::string(strategy_name(plan.strategy())) : std::string("none");
    out["group_size"] = plan.group_size();
    json cards = json::array();
    for (const auto& card : plan.cards()) {
        const auto& mem = card.memory();
        json layers = json::array();
        for (uint32_t l = card.layer_begin(); l < card.layer_end(); ++l) layers.push_back(l);
        uint32_t replicas = 0;
        for (const auto& slot : card.experts()) replicas += slot.replica() > 0 ? 1 : 0;
        cards.push_back({{"name", card.name()},
                         {"kind", card.kind()},
                         {"vram_bytes", card.vram_bytes()},
                         {"used_bytes", mem.total()},
                         {"weights_bytes", mem.dense_weights() + mem.expert_weights()},
                         {"expert_bytes", mem.expert_weights()},
                         {"kv_bytes", mem.kv_cache()},
                         {"buffer_bytes", mem.activations() + mem.comm_buffers()},
                         {"reserve_bytes", mem.reserve()},
                         {"layers", layers},
                         {"num_experts", card.experts_size()},
                         {"num_replicas", replicas},
                         {"kv_tokens", card.kv_tokens()},
                         {"link_bytes_per_step", card.link_bytes()}});
    }
    out["cards"] = cards;
    uint64_t spilled = 0;
    for (const auto& host : plan.hosts()) spilled += host.spilled_bytes();
    out["host_spilled_bytes"] = spilled;
    if (plan.fits()) {
        const auto& p = plan.predicted();
        out["predicted"] = {{"decode_tokens_per_s", p.decode_tokens_per_s()},
                            {"decode_tokens_per_s_batch", p.decode_tokens_per_s_batch()},
                            {"prefill_tokens_per_s", p.prefill_tokens_per_s()},
                            {"ttft_s", p.ttft_s()},
                            {"max_context", p.max_context()},
                            {"balance", p.balance()}};
    } else {
        out["predicted"] = nullptr;
    }
    if (advice) {
        json over = json::array();
        for (const auto& c : advice->cards) {
            over.push_back({{"name", c.name},
                            {"kind", c.kind},
                            {"need_bytes", c.need_bytes},
                            {"vram_bytes", c.vram_bytes},
                            {"over_bytes", c.over_bytes}});
        }
        out["advice"] = {{"reason", advice->reason},
                         {"need_bytes", advice->need_bytes},
                         {"vram_bytes", advice->vram_bytes},
                         {"cards", over},
                         {"suggestions", advice->suggestions}};
    }
    return out;
}

}  // namespace moerig::sharding
