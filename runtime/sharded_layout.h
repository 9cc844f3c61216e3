// Which card holds what in a sharded run: each card's stage (a contiguous layer range whose attention,
// dense parts and KV cache live there) and its expert slots per layer. Filled from a planner Plan, or
// built directly (pipeline, expert-parallel, hybrid, replicated) for tests and benchmarks. Also the
// byte accounting of each card's share of a GGUF model, which the executor charges to the budgets.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/dispatcher.h"
#include "runtime/hparams.h"
#include "runtime/kv_cache.h"
#include "runtime/link_emulation.h"

namespace moerig::formats {
class GgufModel;
}
namespace moerig::proto {
class Plan;
}

namespace moerig::runtime {

/// One card of a sharded run, or one host's RAM holding experts spilled off the cards (host == true):
/// a participant that computes its experts on the CPU straight from the model mapping, charged to the
/// host's spill budget, with no stage and no PCIe link of its own (rows to it cross only the sender's link).
struct ShardCard {
    std::string name;
    size_t budget_bytes = 0;  ///< usable VRAM: the card's memory budget (host: RAM the plan may fill)
    LinkSpec link;
    bool host = false;        ///< host RAM with spilled experts, not a card
    int64_t layer_begin = 0;  ///< stage [layer_begin, layer_end); empty when the card only holds experts
    int64_t layer_end = 0;
    std::vector<std::vector<int32_t>> experts;  ///< [layer] routed experts with a slot here (sized n_layer)
    size_t predicted_bytes = 0;                 ///< the plan's weights + KV for this card (0 = no plan)
};

/// The whole assignment. Invariants (validate()): stages tile [0, n_layer) without gaps or overlaps,
/// every routed expert of every MoE layer has at least one slot (on a card or a host), hosts hold no stage.
struct ShardLayout {
    std::vector<ShardCard> cards;

    int num_cards() const { return static_cast<int>(cards.size()); }
    /// The card whose stage contains layer_idx.
    int stage_card(int64_t layer_idx) const;
    /// The replicas of each expert of one layer.
    ExpertPlacement placement(int64_t layer_idx, int64_t num_experts) const;
    /// Ranks taking part in a MoE layer's exchange: its stage card and every card with a slot of it, sorted.
    std::vector<int> participants(int64_t layer_idx) const;
    /// Throws ConfigError naming the first layer or expert that is not placed.
    void validate(const ModelHParams& hp) const;

    /// One card holding everything.
    static ShardLayout single(const ModelHParams& hp, size_t budget_bytes);
    /// Layer split (llama.cpp style): contiguous, near-equal stages; each layer's experts on its stage card.
    static ShardLayout pipeline(const ModelHParams& hp, int num_cards, size_t budget_bytes);
    /// Stages split as in pipeline; every layer's experts spread over all cards (expert e on card
    /// (e + layer) % num_cards, so the stage card is not always the one holding expert 0).
    static ShardLayout expert_parallel(const ModelHParams& hp, int num_cards, size_t budget_bytes);
    /// Pipeline over groups of group_size cards; each layer's experts spread within its group.
    static ShardLayout hybrid(const ModelHParams& hp, int num_cards, int group_size, size_t budget_bytes);
    /// expert_parallel plus a second slot of experts [0, num_hot) on the next card.
    static ShardLayout replicated(const ModelHParams& hp, int num_cards, int num_hot, size_t budget_bytes);
    /// From a planner Plan: stages, expert slots, budgets (usable VRAM), links and predicted bytes. Experts
    /// the plan keeps in host RAM become one host participant per host (after the cards), budgeted with the
    /// RAM the planner may fill (its usable fraction of the host's RAM less the token embedding).
    static ShardLayout from_plan(const proto::Plan& plan, const ModelHParams& hp);
    /// Moves the experts of each MoE layer listed in spilled[layer] from the cards to one new host
    /// participant (last rank) with budget_bytes of RAM, as a plan with spill does.
    void spill_to_host(const std::vector<std::vector<int32_t>>& spilled, size_t budget_bytes);
    /// Number of host participants.
    int num_hosts() const;

    /// Same links for every card (e.g. to emulate a rig's risers on a hand-built layout); hosts keep theirs.
    void set_links(const LinkSpec& link);
};

/// Bytes of one card's share of a model file, by what the executor charges.
struct CardShareBytes {
    size_t dense_weights = 0;   ///< stage layers' attention, norms, routers, shared/dense FFN; output head
    size_t expert_weights = 0;  ///< routed expert slots
    size_t kv_cache = 0;        ///< KV cache of the stage layers for `context` positions
    size_t total() const { return dense_weights + expert_weights + kv_cache; }
};

/// Exact bytes each card holds for gguf under layout (the token embedding stays in host memory, as the
/// planner assumes; the output norm and head go to the last stage's card), with KV caches of type and ring kv.
std::vector<CardShareBytes> card_share_bytes(const formats::GgufModel& gguf, const ModelHParams& hp,
                                             const ShardLayout& layout, int64_t context, const KvOptions& kv = {});

}  // namespace moerig::runtime
