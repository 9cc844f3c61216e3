// The sharded executor: one model run across virtual cards by a ShardLayout. Each card charges only its
// share (stage layers, expert slots, output head, KV cache) to its budget; per step every card runs on
// its own thread: attention on the stage card, hidden states handed to the next stage's card through
// the communicator, MoE layers through the dispatcher. Same tokens as a one-card run.
#pragma once

#include <algorithm>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/batch.h"
#include "runtime/card_experts_backend.h"
#include "runtime/local_communicator.h"
#include "runtime/model.h"
#include "runtime/sharded_layout.h"

namespace moerig::runtime {

struct ShardedOptions {
    int64_t context = 512;       ///< KV positions per sequence slot on each stage card
    int num_slots = 1;           ///< sequences evaluated together (each its own KV cache on every stage card)
    int threads_per_card = 1;    ///< each card's own thread pool (1: the card's thread alone)
    bool emulate_links = false;  ///< model PCIe link time from the layout's links
    bool sleep_links = false;    ///< with emulation: sleep so wall-clock time includes link time
    bool quantize_8bit = false;  ///< dispatch hidden states as int8 + per-row scale
    /// The stage cards' KV cache rows: F32, or F16 as a plan from `moerig plan` counts them. Sliding-window
    /// layers keep a ring sized for max_step_rows new positions per step (the whole context when it is 0).
    DType kv_dtype = DType::F32;
    /// With emulation: every card's compute (its thread's CPU time) moves its virtual clock too, so
    /// modelled_s() is the time of a rig whose cards each compute on a processor of their own at this CPU's
    /// per-core speed, with the emulated links, whatever the host's core count (LocalCommunicator::
    /// enable_compute_clock). Each step starts with the cards' clocks aligned (the next token needs the last
    /// one's logits). Needs threads_per_card == 1 (a card's helper threads are not on its thread's CPU clock).
    /// The cards take turns to compute (exclusive compute clock), on one core (Linux), so each one is measured
    /// with the host's DRAM bandwidth to itself, as a real card has its own memory, and without the cost of
    /// waking an idle core or moving to a cold one (+20-35% CPU time for a 4-card pipeline on a 2-core VM when
    /// its threads hopped between cores). Wall time is then the sum of the cards' compute.
    bool compute_clock = false;
    /// Rows (tokens of all sequences) per micro-batch: a longer step runs as several ubatches one after the
    /// other (KV positions continue, so the logits are those of one step), which bounds the residual stream and
    /// the dispatcher's buffers by what the plan reserved. 0: the whole step at once.
    int64_t max_step_rows = 0;
    /// Logits rows the output card computes at once (its logits buffer); 0: every wanted row of a ubatch.
    int64_t max_logits_rows = 0;
    /// Makes each card's expert backend (e.g. runtime/cuda/cuda_card_experts.h: its experts on a GPU); with one,
    /// every MoE layer runs through the dispatcher, even where the stage card holds all its experts. Empty: the
    /// cards compute their experts on the CPU from the model mapping.
    CardExpertsFactory card_experts = {};
};

/// What one card did and holds.
struct CardStats {
    std::string name;
    bool host = false;  ///< host RAM computing spilled experts on the CPU (ShardCard::host), not a card
    size_t budget_bytes = 0;
    size_t used_bytes = 0;  ///< held now (weights + KV + activations + comm buffers)
    size_t peak_bytes = 0;
    size_t weights_bytes = 0;  ///< dense + expert weights charged
    size_t kv_bytes = 0;
    size_t predicted_bytes = 0;  ///< the plan's weights + KV (our own accounting when there is no plan)
    size_t bytes_sent = 0;
    size_t bytes_received = 0;
    size_t num_groups = 0;       ///< communication groups completed (hand-offs, dispatcher exchanges)
    double busy_s = 0;           ///< wall time computing (time waiting in communication excluded)
    double modelled_link_s = 0;  ///< modelled link time (emulation only)
    double compute_clock_s = 0;  ///< compute put on the card's virtual clock (compute_clock only)
    /// Expert weights the card's expert backend holds on a device of its own (ShardedOptions::card_experts).
    size_t expert_backend_bytes = 0;
};

class ShardedModel {
  public:
    /// Checks every card's share against its budget before charging anything: a layout needing more
    /// than a card's budget is refused with OutOfMemoryError naming the card, the need and the budget.
    ShardedModel(const Model& model, ShardLayout layout, const ShardedOptions& options = {});
    ~ShardedModel();

    /// Runs tokens at positions n_past().. of slot 0 on all cards; returns the logits of the last token
    /// (n_vocab), or of every token when all_logits.
    std::vector<float> eval(std::span<const int32_t> tokens, bool all_logits = false);
    /// One step over several sequences (each slot at most once): attention per sequence on its own KV cache,
    /// one dispatcher exchange per MoE layer for all the tokens of a ubatch (options max_step_rows). Returns per
    /// entry the logits of its last token (n_vocab), or of every token with all_logits. A step that fails on a
    /// card (out of memory, a backend error) is rethrown and leaves the model usable: every slot is back where
    /// it was before the step, except a slot whose sliding-window ring an earlier ubatch of that step had already
    /// advanced (its window may be overwritten), which is reset to empty.
    std::vector<std::vector<float>> eval(std::span<const SeqTokens> entries);

    int num_slots() const { return options_.num_slots; }
    int64_t n_past(int slot_idx = 0) const { return n_past_.at(static_cast<size_t>(slot_idx)); }
    /// Forgets every slot's cached positions.
    void reset() { std::fill(n_past_.begin(), n_past_.end(), 0); }
    /// Forgets one slot's cached positions, so it can take a new sequence.
    void reset(int slot_idx);
    const ShardLayout& layout() const { return layout_; }
    const Model& model() const { return model_; }
    std::vector<CardStats> card_stats() const;
    /// The card's expert backend (ShardedOptions::card_experts); nullptr when it computes from the mapping.
    const CardExpertsBackend* card_experts(int card_idx) const;
    /// The slowest card's virtual clock so far (emulation only): modelled link time, plus compute with
    /// compute_clock.
    double modelled_s() const;

  private:
    struct Card;
    class CardThreads;
    /// The step's ubatches, one after the other (limit rows each); appends each entry's logits to out.
    void run_step(std::span<const SeqTokens> entries, int64_t limit, std::vector<std::vector<float>>& out);
    /// True when a stage card's KV cache of this slot keeps sliding-window layers in a ring.
    bool wraps(int slot_idx) const;
    /// One ubatch: entries' tokens laid out by segments (num_out 0 for a sequence whose last token comes later).
    std::vector<float> run_ubatch(std::span<const SeqTokens> entries, std::span<const BatchSegment> segments);
    void run_card(int rank, std::span<const SeqTokens> entries, std::span<const BatchSegment> segments,
                  std::vector<float>& logits);

    const Model& model_;
    ShardLayout layout_;
    ShardedOptions options_;
    std::vector<ExpertPlacement> placements_;     // [layer]
    std::vector<std::vector<int>> participants_;  // [layer]
    std::shared_ptr<LinkEmulation> links_;
    std::vector<std::unique_ptr<LocalCommunicator>> comms_;
    std::vector<std::unique_ptr<Card>> cards_;
    std::unique_ptr<CardThreads> threads_;  // last: stopped before the cards go
    std::vector<int64_t> n_past_;           // [slot]
};

}  // namespace moerig::runtime
