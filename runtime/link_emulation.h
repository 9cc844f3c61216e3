// Link emulation for virtual cards: each card hangs off the host by a PCIe link (generation x lanes),
// with or without P2P. Card-to-card messages either cross both links cut-through (P2P) or are staged
// through host memory (two crossings), forwarded chunk by chunk as a real staged transport does: a
// chunk crosses the receiver's link once it is wholly in host memory. Modelled time is computed exactly
// from byte counts with per-rank virtual clocks, so it never depends on thread timing.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace moerig::runtime {

/// One card's link to the host.
struct LinkSpec {
    int pcie_gen = 3;          ///< 1..5
    int lanes = 16;            ///< 1, 4, 8, 16
    bool p2p = false;          ///< GPUDirect P2P with other P2P cards
    double latency_s = 10e-6;  ///< per message, added on arrival
    /// The host's own RAM (experts spilled there), not a card: no link of its own, so a transfer to or
    /// from it takes only the card's side (bytes_per_s() is infinite).
    bool host_memory = false;

    /// Bytes per second per direction: lanes x per-lane rate (gen1 0.25, gen2 0.5, gen3 0.985,
    /// gen4 1.97, gen5 3.94 GB/s).
    double bytes_per_s() const;
    std::string describe() const;  ///< "PCIe 3.0 x1, staged via host"
};

/// Per-lane, per-direction PCIe rate in bytes/s for a generation (throws ConfigError outside 1..5).
double pcie_lane_bytes_per_s(int pcie_gen);

/// One message src → dst as the model sees it.
struct LinkMessage {
    int src_rank = 0;
    int dst_rank = 0;
    size_t num_bytes = 0;
};

/// The rig's links and the virtual-clock model. Not thread-safe by itself: LocalCommunicator calls it
/// under its own lock, in an order fixed by rank numbers.
class LinkEmulation {
  public:
    /// Staging chunk of NCCL's point-to-point transfers over PCIe (NCCL_P2P_PCI_CHUNKSIZE, 128 KiB): a
    /// staged message is forwarded through its host bounce buffer in pieces of this size.
    static constexpr size_t kDefaultStageChunkBytes = size_t{128} << 10;

    /// sleep: make wall-clock time follow modelled time (for demos); tests leave it off.
    /// stage_chunk_bytes: forwarding unit of staged messages; 0 = whole message (store and forward).
    explicit LinkEmulation(std::vector<LinkSpec> links, bool sleep = false,
                           size_t stage_chunk_bytes = kDefaultStageChunkBytes);

    int num_cards() const { return static_cast<int>(links_.size()); }
    const LinkSpec& link(int rank) const { return links_.at(rank); }
    bool sleeps() const { return sleep_; }
    size_t stage_chunk_bytes() const { return stage_chunk_bytes_; }
    /// True when src → dst goes cut-through (both cards P2P); otherwise staged through host memory.
    bool direct(int src_rank, int dst_rank) const;

    /// Time for one message alone on idle links: latency + bytes/min(bw) (direct); staged, latency plus
    /// the chunk pipeline: every chunk crosses the sender's link, then the receiver's (bytes/bw_src +
    /// bytes/bw_dst when the message is a single chunk).
    double message_s(int src_rank, int dst_rank, size_t num_bytes) const;

    /// Sender side of a group: the messages occupy src's uplink one after another, starting no earlier
    /// than src's clock. Returns per message when its first and last byte left src.
    struct Departure {
        double up_start = 0;
        double up_end = 0;
    };
    std::vector<Departure> depart(int src_rank, const std::vector<LinkMessage>& messages);

    /// Receiver side: messages (with their departures) occupy dst's downlink, no earlier than start_s
    /// (dst's clock when its group began). The downlink takes pieces first come, first served: a direct
    /// message when its first byte leaves, a staged chunk when it is wholly in host memory; ties go to
    /// the earlier message in the order given (LocalCommunicator sorts by departure, then sender rank).
    /// Returns the last arrival (+ latency), or start_s when there are none.
    double arrive(int dst_rank, double start_s, const std::vector<LinkMessage>& messages,
                  const std::vector<Departure>& departures);

    /// Moves rank's clock forward to t_s (never back); returns how far it moved.
    double advance_to(int rank, double t_s);

    /// Aligns a set of ranks' clocks to their maximum (a barrier).
    void align(const std::vector<int>& ranks);

    double clock_s(int rank) const { return clock_s_.at(rank); }
    /// Busy seconds of a card's uplink / downlink so far.
    double up_busy_s(int rank) const { return up_busy_s_.at(rank); }
    double down_busy_s(int rank) const { return down_busy_s_.at(rank); }

  private:
    std::vector<LinkSpec> links_;
    bool sleep_;
    size_t stage_chunk_bytes_;
    std::vector<double> clock_s_;
    std::vector<double> up_free_s_;
    std::vector<double> down_free_s_;
    std::vector<double> up_busy_s_;
    std::vector<double> down_busy_s_;
};

}  // namespace moerig::runtime
