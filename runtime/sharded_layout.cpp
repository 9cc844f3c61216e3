// ShardLayout: builders for the standard strategies, the translation from a planner Plan (experts spilled
// to host RAM included), validation, and the exact per-card byte accounting of a GGUF model's tensors.
#include "runtime/sharded_layout.h"

#include <algorithm>
#include <set>

#include "formats/gguf.h"
#include "kernels/error.h"
#include "proto/plan.pb.h"
#include "sharding/cost_coefficients.h"

namespace moerig::runtime {

namespace {

ShardCard make_card(int idx, size_t budget_bytes, int64_t n_layer) {
    ShardCard c;
    c.name = "card" + std::to_string(idx);
    c.budget_bytes = budget_bytes;
    c.experts.resize(n_layer);
    return c;
}

/// Splits n_layer into num_parts contiguous near-equal ranges; range i is [begin[i], begin[i+1]).
std::vector<int64_t> split_layers(int64_t n_layer, int num_parts) {
    std::vector<int64_t> begin(num_parts + 1);
    for (int i = 0; i <= num_parts; ++i) begin[i] = n_layer * i / num_parts;
    return begin;
}

int64_t layer_of(const std::string& name) {
    if (name.rfind("blk.", 0) != 0) return -1;
    return std::stoll(name.substr(4, name.find('.', 4) - 4));
}

}  // namespace

int ShardLayout::stage_card(int64_t layer_idx) const {
    for (int c = 0; c < num_cards(); ++c) {
        if (layer_idx >= cards[c].layer_begin && layer_idx < cards[c].layer_end) return c;
    }
    MOERIG_THROW(ConfigError, "shard layout: no card's stage contains layer {}", layer_idx);
}

ExpertPlacement ShardLayout::placement(int64_t layer_idx, int64_t num_experts) const {
    ExpertPlacement p;
    p.replicas.resize(num_experts);
    for (int c = 0; c < num_cards(); ++c) {
        for (int32_t e : cards[c].experts.at(layer_idx)) p.replicas.at(e).push_back(c);
    }
    return p;
}

std::vector<int> ShardLayout::participants(int64_t layer_idx) const {
    std::set<int> ranks{stage_card(layer_idx)};
    for (int c = 0; c < num_cards(); ++c)
        if (!cards[c].experts.at(layer_idx).empty()) ranks.insert(c);
    return {ranks.begin(), ranks.end()};
}

void ShardLayout::validate(const ModelHParams& hp) const {
    MOERIG_CHECK(num_cards() > 0, ConfigError, "shard layout has no cards");
    std::vector<int> owner(hp.n_layer, -1);
    for (int c = 0; c < num_cards(); ++c) {
        const ShardCard& card = cards[c];
        MOERIG_CHECK(card.layer_begin >= 0 && card.layer_begin <= card.layer_end && card.layer_end <= hp.n_layer,
                     ConfigError, "shard layout: card '{}' has stage [{}, {}), outside the model's {} layers",
                     card.name, card.layer_begin, card.layer_end, hp.n_layer);
        MOERIG_CHECK(static_cast<int64_t>(card.experts.size()) == hp.n_layer, ConfigError,
                     "shard layout: card '{}' lists experts for {} layers, the model has {}", card.name,
                     card.experts.size(), hp.n_layer);
        MOERIG_CHECK(!card.host || card.layer_begin == card.layer_end, ConfigError,
                     "shard layout: host '{}' has stage [{}, {}); host RAM holds only spilled experts", card.name,
                     card.layer_begin, card.layer_end);
        for (int64_t l = card.layer_begin; l < card.layer_end; ++l) {
            MOERIG_CHECK(owner[l] < 0, ConfigError, "shard layout: layer {} is in the stages of cards '{}' and '{}'", l,
                         cards[owner[l]].name, card.name);
            owner[l] = c;
        }
    }
    for (int64_t l = 0; l < hp.n_layer; ++l) {
        MOERIG_CHECK(owner[l] >= 0, ConfigError, "shard layout: layer {} is in no card's stage", l);
        if (!hp.is_moe_layer(l)) continue;
        placement(l, hp.n_expert).validate(num_cards());
    }
}

ShardLayout ShardLayout::single(const ModelHParams& hp, size_t budget_bytes) {
    return pipeline(hp, 1, budget_bytes);
}

ShardLayout ShardLayout::pipeline(const ModelHParams& hp, int num_cards, size_t budget_bytes) {
    ShardLayout layout;
    const auto begin = split_layers(hp.n_layer, num_cards);
    for (int c = 0; c < num_cards; ++c) {
        ShardCard card = make_card(c, budget_bytes, hp.n_layer);
        card.layer_begin = begin[c];
        card.layer_end = begin[c + 1];
        for (int64_t l = card.layer_begin; l < card.layer_end; ++l) {
            if (!hp.is_moe_layer(l)) continue;
            for (int32_t e = 0; e < hp.n_expert; ++e) card.experts[l].push_back(e);
        }
        layout.cards.push_back(std::move(card));
    }
    return layout;
}

ShardLayout ShardLayout::expert_parallel(const ModelHParams& hp, int num_cards, size_t budget_bytes) {
    return hybrid(hp, num_cards, num_cards, budget_bytes);
}

ShardLayout ShardLayout::hybrid(const ModelHParams& hp, int num_cards, int group_size, size_t budget_bytes) {
    MOERIG_CHECK(group_size >= 1 && num_cards % group_size == 0, ConfigError,
                 "hybrid layout: {} cards do not split into groups of {}", num_cards, group_size);
    const int num_groups = num_cards / group_size;
    ShardLayout layout;
    for (int c = 0; c < num_cards; ++c) layout.cards.push_back(make_card(c, budget_bytes, hp.n_layer));
    const auto group_begin = split_layers(hp.n_layer, num_groups);
    for (int g = 0; g < num_groups; ++g) {
        // Attention stages: the group's layers split over its cards.
        const int64_t lb = group_begin[g], le = group_begin[g + 1];
        for (int i = 0; i < group_size; ++i) {
            ShardCard& card = layout.cards[g * group_size + i];
            card.layer_begin = lb + (le - lb) * i / group_size;
            card.layer_end = lb + (le - lb) * (i + 1) / group_size;
        }
        for (int64_t l = lb; l < le; ++l) {
            if (!hp.is_moe_layer(l)) continue;
            for (int32_t e = 0; e < hp.n_expert; ++e) {
                layout.cards[g * group_size + (e + l) % group_size].experts[l].push_back(e);
            }
        }
    }
    return layout;
}

ShardLayout ShardLayout::replicated(const ModelHParams& hp, int num_cards, int num_hot, size_t budget_bytes) {
    ShardLayout layout = expert_parallel(hp, num_cards, budget_bytes);
    for (int64_t l = 0; l < hp.n_layer; ++l) {
        if (!hp.is_moe_layer(l)) continue;
        for (int32_t e = 0; e < std::min<int64_t>(num_hot, hp.n_expert); ++e) {
            const int home = static_cast<int>((e + l) % num_cards);
            auto& slots = layout.cards[(home + 1) % num_cards].experts[l];
            if (std::find(slots.begin(), slots.end(), e) == slots.end()) slots.push_back(e);
        }
    }
    return layout;
}

ShardLayout ShardLayout::from_plan(const proto::Plan& plan, const ModelHParams& hp) {
    MOERIG_CHECK(plan.fits(), ConfigError, "plan for '{}' on rig '{}' does not fit; it cannot be run",
                 plan.model().name(), plan.rig().name());
    ShardLayout layout;
    for (int c = 0; c < plan.cards_size(); ++c) {
        const proto::CardPlan& cp = plan.cards(c);
        ShardCard card = make_card(c, 0, hp.n_layer);
        card.name = cp.name().empty() ? card.name : cp.name();
        uint64_t reserve = 0;
        if (cp.card_idx() < static_cast<uint32_t>(plan.rig().cards_size())) {
            const proto::CardSpec& spec = plan.rig().cards(cp.card_idx());
            reserve = spec.reserve_bytes();
            card.link.pcie_gen = static_cast<int>(spec.link().pcie_gen());
            card.link.lanes = static_cast<int>(spec.link().pcie_lanes());
            card.link.p2p = spec.link().p2p();
        }
        const uint64_t vram = cp.vram_bytes();
        card.budget_bytes = vram > reserve ? vram - reserve : 0;
        card.layer_begin = cp.layer_begin();
        card.layer_end = cp.layer_end();
        for (const proto::ExpertSlot& slot : cp.experts()) {
            MOERIG_CHECK(slot.layer() < hp.n_layer && slot.expert() < hp.n_expert, ConfigError,
                         "plan: card '{}' has a slot for layer {} expert {}, but the model has {} layers of {} experts",
                         card.name, slot.layer(), slot.expert(), hp.n_layer, hp.n_expert);
            card.experts[slot.layer()].push_back(static_cast<int32_t>(slot.expert()));
        }
        const proto::MemoryBreakdown& m = cp.memory();
        card.predicted_bytes = m.dense_weights() + m.expert_weights() + m.kv_cache();
        layout.cards.push_back(std::move(card));
    }
    for (const proto::HostPlan& hp_plan : plan.hosts()) {
        if (hp_plan.spilled_experts_size() == 0) continue;
        ShardCard host = make_card(0, 0, hp.n_layer);
        host.name = "host" + std::to_string(hp_plan.host_idx());
        host.host = true;
        host.link.host_memory = true;
        uint64_t ram = 0;
        if (hp_plan.host_idx() < static_cast<uint32_t>(plan.rig().hosts_size())) {
            const proto::HostSpec& spec = plan.rig().hosts(static_cast<int>(hp_plan.host_idx()));
            if (!spec.name().empty()) host.name = "host:" + spec.name();
            ram = spec.ram_bytes();
        }
        const auto usable = static_cast<uint64_t>(sharding::coeff::kHostRamUsableFraction * static_cast<double>(ram));
        MOERIG_CHECK(usable > hp_plan.embedding_bytes(), ConfigError,
                     "plan: host '{}' keeps {} experts in RAM, but the rig gives it no usable RAM ({} bytes, {} of "
                     "them for the token embedding)",
                     host.name, hp_plan.spilled_experts_size(), usable, hp_plan.embedding_bytes());
        host.budget_bytes = usable - hp_plan.embedding_bytes();
        for (const proto::ExpertSlot& slot : hp_plan.spilled_experts()) {
            MOERIG_CHECK(slot.layer() < hp.n_layer && slot.expert() < hp.n_expert, ConfigError,
                         "plan: host '{}' has a spilled expert {} of layer {}, but the model has {} layers of {} "
                         "experts",
                         host.name, slot.expert(), slot.layer(), hp.n_layer, hp.n_expert);
            host.experts[slot.layer()].push_back(static_cast<int32_t>(slot.expert()));
        }
        host.predicted_bytes = hp_plan.spilled_bytes();
        layout.cards.push_back(std::move(host));
    }
    layout.validate(hp);
    return layout;
}

void ShardLayout::set_links(const LinkSpec& link) {
    for (ShardCard& c : cards)
        if (!c.host) c.link = link;
}

void ShardLayout::spill_to_host(const std::vector<std::vector<int32_t>>& spilled, size_t budget_bytes) {
    const auto n_layer = static_cast<int64_t>(spilled.size());
    ShardCard host = make_card(0, budget_bytes, n_layer);
    host.name = "host" + std::to_string(num_hosts());
    host.host = true;
    host.link.host_memory = true;
    for (int64_t l = 0; l < n_layer; ++l) {
        for (int32_t e : spilled[l]) {
            for (ShardCard& card : cards) std::erase(card.experts.at(l), e);
            host.experts[l].push_back(e);
        }
    }
    cards.push_back(std::move(host));
}

int ShardLayout::num_hosts() const {
    return static_cast<int>(std::count_if(cards.begin(), cards.end(), [](const ShardCard& c) { return c.host; }));
}

std::vector<CardShareBytes> card_share_bytes(const formats::GgufModel& gguf, const ModelHParams& hp,
                                             const ShardLayout& layout, int64_t context, const KvOptions& kv) {
    std::vector<CardShareBytes> out(layout.num_cards());
    const int output_card = layout.stage_card(hp.n_layer - 1);
    for (const formats::GgufTensor& t : gguf.tensors()) {
        const int64_t l = layer_of(t.name);
        if (l < 0) {
            if (t.name.rfind("output", 0) == 0) out[output_card].dense_weights += t.num_bytes;
            continue;  // token_embd (and rope tables) stay in host memory
        }
        if (t.name.find("_exps.") != std::string::npos) {
            // Merged expert weights are 3-D, their per-expert biases (gpt-oss) 2-D; experts are the last dim.
            MOERIG_CHECK(
                (t.dims.size() == 3 || t.dims.size() == 2) && t.dims.back() == static_cast<uint64_t>(hp.n_expert),
                FormatError, "{}: tensor '{}' should be 2-D or 3-D with {} experts in its last dimension", gguf.path(),
                t.name, hp.n_expert);
            const uint64_t per_expert = t.num_bytes / t.dims.back();
            for (int c = 0; c < layout.num_cards(); ++c) {
                out[c].expert_weights += per_expert * layout.cards[c].experts.at(l).size();
            }
            continue;
        }
        out[layout.stage_card(l)].dense_weights += t.num_bytes;
    }
    for (int c = 0; c < layout.num_cards(); ++c) {
        const ShardCard& card = layout.cards[c];
        out[c].kv_cache = KvCache::bytes_for(hp, context, card.layer_begin, card.layer_end, kv);
    }
    return out;
}

}  // namespace moerig::runtime
