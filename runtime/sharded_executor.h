// The sharded executor: one model run across virtual cards by a ShardLayout. Each card charges only its
// share (stage layers, expert slots, output head, KV cache) to its budget; per step every card runs on
// its own thread: attention on the stage card, hidden states handed to the next stage's card through
// the communicator, MoE layers through the dispatcher. Same tokens as a one-card run.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/local_communicator.h"
#include "runtime/model.h"
#include "runtime/sharded_layout.h"

namespace moerig::runtime {

struct ShardedOptions {
    int64_t context = 512;       ///< KV positions per stage card
    int threads_per_card = 1;    ///< each card's own thread pool (1: the card's thread alone)
    bool emulate_links = false;  ///< model PCIe link time from the layout's links
    bool sleep_links = false;    ///< with emulation: sleep so wall-clock time includes link time
    bool quantize_8bit = false;  ///< dispatch hidden states as int8 + per-row scale
};

/// What one card did and holds.
struct CardStats {
    std::string name;
    size_t budget_bytes = 0;
    size_t used_bytes = 0;  ///< held now (weights + KV + activations + comm buffers)
    size_t peak_bytes = 0;
    size_t weights_bytes = 0;  ///< dense + expert weights charged
    size_t kv_bytes = 0;
    size_t predicted_bytes = 0;  ///< the plan's weights + KV (our own accounting when there is no plan)
    size_t bytes_sent = 0;
    size_t bytes_received = 0;
    double busy_s = 0;           ///< wall time computing (time waiting in communication excluded)
    double modelled_link_s = 0;  ///< modelled link time (emulation only)
};

class ShardedModel {
  public:
    /// Checks every card's share against its budget before charging anything: a layout needing more
    /// than a card's budget is refused with OutOfMemoryError naming the card, the need and the budget.
    ShardedModel(const Model& model, ShardLayout layout, const ShardedOptions& options = {});
    ~ShardedModel();

    /// Runs tokens at positions n_past().. on all cards; returns the logits of the last token (n_vocab),
    /// or of every token when all_logits.
    std::vector<float> eval(std::span<const int32_t> tokens, bool all_logits = false);

    int64_t n_past() const { return n_past_; }
    void reset() { n_past_ = 0; }
    const ShardLayout& layout() const { return layout_; }
    const Model& model() const { return model_; }
    std::vector<CardStats> card_stats() const;
    /// Modelled link time on the slowest card's clock so far (emulation only).
    double modelled_link_s() const;

  private:
    struct Card;
    class CardThreads;
    void run_card(int rank, std::span<const int32_t> tokens, bool all_logits, std::vector<float>& logits);

    const Model& model_;
    ShardLayout layout_;
    ShardedOptions options_;
    std::vector<ExpertPlacement> placements_;     // [layer]
    std::vector<std::vector<int>> participants_;  // [layer]
    std::shared_ptr<LinkEmulation> links_;
    std::vector<std::unique_ptr<LocalCommunicator>> comms_;
    std::vector<std::unique_ptr<Card>> cards_;
    std::unique_ptr<CardThreads> threads_;  // last: stopped before the cards go
    int64_t n_past_ = 0;
};

}  // namespace moerig::runtime
