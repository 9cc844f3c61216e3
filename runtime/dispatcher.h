// The MoE all-to-all dispatcher, transport-agnostic: layout (which card computes each (token, expert),
// least-loaded replica), pack by destination (one row per (token, card), carrying that card's expert
// ids and weights), all_to_all_v through any Communicator, expert FFNs grouped by expert, the reverse
// exchange and the weighted combine. A DispatchHandle keeps the permutation so combine is exact.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/communicator.h"
#include "runtime/device.h"

namespace moerig::runtime {

/// Where the routed experts of one MoE layer live: for each expert, the ranks holding a copy.
struct ExpertPlacement {
    std::vector<std::vector<int>> replicas;  // [expert_idx] -> ranks (non-empty, no duplicates)

    int num_experts() const { return static_cast<int>(replicas.size()); }
    /// Every expert on one rank.
    static ExpertPlacement all_on(int num_experts, int rank);
    /// Expert e on rank e % num_ranks.
    static ExpertPlacement round_robin(int num_experts, int num_ranks);
    /// Throws ConfigError when an expert has no copy, a rank is out of range or repeated.
    void validate(int num_ranks) const;
};

/// The routed experts of one layer that live on this card, run one expert at a time over the rows
/// grouped for it. Called on the card's own thread. (The engine's ExpertRunner in moe.h runs a whole
/// layer; the sharded executor adapts one to the other.)
class CardExperts {
  public:
    virtual ~CardExperts() = default;
    /// y = FFN_expert(x) for num_rows rows of hidden floats (row-major (num_rows, hidden)); y is
    /// overwritten. Only experts the placement puts on this card are asked for.
    virtual void run_expert(int expert_idx, const float* x, int64_t num_rows, float* y) = 0;
};

struct DispatchConfig {
    int64_t hidden_dim = 0;  ///< floats per token row
    int top_k = 0;           ///< experts per token
    /// Send hidden states as int8 with one float scale per row (absmax / 127); results return as f32.
    bool quantize_8bit = false;
};

/// What dispatch() learned, kept for combine(): the permutation on the sending side and the row
/// counts on the computing side. The received rows stay in the dispatcher's buffers, so a handle is
/// combined by the dispatcher that filled it, before its next dispatch().
struct DispatchHandle {
    int64_t num_tokens = 0;
    std::vector<size_t> send_rows;       // [rank] rows sent to it (packed by rank, then token)
    std::vector<int32_t> row_token_idx;  // [send row] the token it carries
    std::vector<size_t> recv_rows;       // [rank] rows received from it
    int64_t num_recv_rows = 0;
    bool experts_done = false;
};

/// Per-call traffic of the last dispatch + combine, for tests and benchmarks.
struct DispatchStats {
    size_t rows_sent_remote = 0;  // rows that left this card (self-rows excluded)
    size_t bytes_sent = 0;        // payload bytes that left this card in dispatch and combine
    size_t bytes_received = 0;
};

/// One rank's dispatcher. Every rank of the communicator calls dispatch() and combine() together for
/// each MoE layer (SPMD); a rank with no tokens passes num_tokens = 0 and still computes the rows
/// others send it. Buffers are allocated on the card's device (kComm) and charged to its budget; the
/// device must be host-accessible.
class Dispatcher {
  public:
    Dispatcher(Communicator& comm, Device& device, DispatchConfig config);

    /// Layout, pack and exchange. hidden (num_tokens, hidden_dim), topk_ids/topk_weights
    /// (num_tokens, top_k). Replica choice: for each (token, expert) in order, the copy on the rank
    /// with the fewest rows assigned so far in this call; ties go to this rank, then the lowest rank.
    /// participants (optional, the same on every rank): the ranks taking part in this layer's exchange
    /// (those holding tokens or experts of it); others do not call, and no counts are exchanged with them.
    void dispatch(DispatchHandle& handle, const ExpertPlacement& placement, const float* hidden, int64_t num_tokens,
                  const int32_t* topk_ids, const float* topk_weights, std::span<const int> participants = {});

    /// Runs this card's experts over the received rows, grouped by expert (ascending ids), and forms
    /// per row the weighted sum of its experts' outputs.
    void run_experts(DispatchHandle& handle, CardExperts& experts);

    /// Reverse exchange and combine: out (num_tokens, hidden_dim) = sum over the token's experts of
    /// weight * FFN(x). Overwrites out (accumulate = false) or adds to it.
    void combine(DispatchHandle& handle, float* out, bool accumulate = false);

    /// dispatch + run_experts + combine.
    void forward(DispatchHandle& handle, const ExpertPlacement& placement, CardExperts& experts, const float* hidden,
                 int64_t num_tokens, const int32_t* topk_ids, const float* topk_weights, float* out,
                 std::span<const int> participants = {});

    const DispatchConfig& config() const { return config_; }
    const DispatchStats& last_stats() const { return stats_; }
    /// Bytes of one dispatched row on the wire (payload + expert ids + weights).
    size_t row_bytes() const { return row_bytes_; }

  private:
    void ensure(Buffer& buffer, size_t num_bytes);

    Communicator& comm_;
    Device& device_;
    DispatchConfig config_;
    size_t payload_bytes_;
    size_t row_bytes_;
    Buffer send_buf_;                        // (rows, row_bytes) packed by destination
    Buffer recv_buf_;                        // (rows, row_bytes) received
    Buffer out_rows_buf_;                    // (received rows, hidden) f32 weighted expert sums, sent back
    Buffer back_buf_;                        // (sent rows, hidden) f32 returned partial sums
    Buffer expert_in_buf_, expert_out_buf_;  // (rows of one expert, hidden) f32
    std::vector<int64_t> expert_count_, expert_begin_;
    std::vector<int64_t> expert_entry_;  // received (row * top_k + slot), grouped by expert
    DispatchStats stats_;
};

}  // namespace moerig::runtime
