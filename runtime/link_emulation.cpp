// PCIe link model: per-lane rates, cut-through (P2P) versus staged (through host memory, chunk by
// chunk) messages, and per-rank virtual clocks advanced only by byte counts, so modelled times are exact.
#include "runtime/link_emulation.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>

#include "kernels/error.h"
#include "sharding/rig.h"

namespace moerig::runtime {

namespace {

/// What a downlink carries as one unit: a whole direct message, or one chunk of a staged one.
struct Piece {
    double ready_s = 0;   ///< earliest start on the downlink
    double up_end_s = 0;  ///< the piece cannot finish arriving before its last byte left the sender
    size_t message_idx = 0;
    size_t num_bytes = 0;
};

/// Sizes of the chunks a staged message of num_bytes is forwarded in (one empty chunk for no bytes).
std::vector<size_t> stage_chunks(size_t num_bytes, size_t chunk_bytes) {
    if (chunk_bytes == 0 || num_bytes <= chunk_bytes) return {num_bytes};
    std::vector<size_t> chunks(num_bytes / chunk_bytes, chunk_bytes);
    if (num_bytes % chunk_bytes != 0) chunks.push_back(num_bytes % chunk_bytes);
    return chunks;
}

}  // namespace

double pcie_lane_bytes_per_s(int pcie_gen) {
    // The rate table lives with the rig model (sharding/rig.h); here an unknown generation is an error.
    const double rate = pcie_gen > 0 ? sharding::pcie_lane_bytes_per_s(static_cast<uint32_t>(pcie_gen)) : 0.0;
    MOERIG_CHECK(rate > 0, ConfigError, "PCIe generation {} is not known: expected 1 to 5", pcie_gen);
    return rate;
}

double LinkSpec::bytes_per_s() const {
    if (host_memory) return std::numeric_limits<double>::infinity();
    MOERIG_CHECK(lanes >= 1 && lanes <= 32, ConfigError, "PCIe link with {} lanes: expected 1 to 32", lanes);
    return pcie_lane_bytes_per_s(pcie_gen) * lanes;
}

std::string LinkSpec::describe() const {
    if (host_memory) return "host memory";
    return fmt::format("PCIe {}.0 x{}, {}", pcie_gen, lanes, p2p ? "P2P" : "staged via host");
}

LinkEmulation::LinkEmulation(std::vector<LinkSpec> links, bool sleep, size_t stage_chunk_bytes)
    : links_(std::move(links)),
      sleep_(sleep),
      stage_chunk_bytes_(stage_chunk_bytes),
      clock_s_(links_.size(), 0.0),
      up_free_s_(links_.size(), 0.0),
      down_free_s_(links_.size(), 0.0),
      up_busy_s_(links_.size(), 0.0),
      down_busy_s_(links_.size(), 0.0) {
    for (const LinkSpec& link : links_) {
        (void)link.bytes_per_s();  // validates gen and lanes now, not mid-run
        MOERIG_CHECK(link.latency_s >= 0, ConfigError, "link latency {} s is negative", link.latency_s);
    }
}

bool LinkEmulation::direct(int src_rank, int dst_rank) const {
    return links_.at(src_rank).p2p && links_.at(dst_rank).p2p;
}

double LinkEmulation::message_s(int src_rank, int dst_rank, size_t num_bytes) const {
    if (src_rank == dst_rank) return 0;
    const double up_bw = links_.at(src_rank).bytes_per_s();
    const double down_bw = links_.at(dst_rank).bytes_per_s();
    if (direct(src_rank, dst_rank)) {
        const double b = static_cast<double>(num_bytes);
        return links_[dst_rank].latency_s + std::max(b / up_bw, b / down_bw);
    }
    // Staged: chunk k goes down once chunks 0..k are up and the downlink has finished chunk k-1.
    double up_bytes = 0, down_free = 0;
    for (size_t chunk : stage_chunks(num_bytes, stage_chunk_bytes_)) {
        up_bytes += static_cast<double>(chunk);
        down_free = std::max(down_free, up_bytes / up_bw) + static_cast<double>(chunk) / down_bw;
    }
    return links_[dst_rank].latency_s + down_free;
}

std::vector<LinkEmulation::Departure> LinkEmulation::depart(int src_rank, const std::vector<LinkMessage>& messages) {
    std::vector<Departure> departures;
    departures.reserve(messages.size());
    const double bw = links_.at(src_rank).bytes_per_s();
    double t = std::max(clock_s_[src_rank], up_free_s_[src_rank]);
    for (const LinkMessage& m : messages) {
        Departure d;
        d.up_start = t;
        if (m.dst_rank != src_rank) {
            const double busy = static_cast<double>(m.num_bytes) / bw;
            t += busy;
            up_busy_s_[src_rank] += busy;
        }
        d.up_end = t;
        departures.push_back(d);
    }
    up_free_s_[src_rank] = t;
    return departures;
}

double LinkEmulation::arrive(int dst_rank, double start_s, const std::vector<LinkMessage>& messages,
                             const std::vector<Departure>& departures) {
    MOERIG_ASSERT(messages.size() == departures.size());
    const LinkSpec& link = links_.at(dst_rank);
    const double bw = link.bytes_per_s();
    double last = start_s;
    std::vector<Piece> pieces;
    for (size_t i = 0; i < messages.size(); ++i) {
        const LinkMessage& m = messages[i];
        const Departure& d = departures[i];
        if (m.src_rank == dst_rank) {
            last = std::max(last, d.up_end);
        } else if (direct(m.src_rank, dst_rank)) {
            // Cut-through: the downlink streams while the uplink does; the slower side sets the pace.
            pieces.push_back(Piece{d.up_start, d.up_end, i, m.num_bytes});
        } else {
            // Staged: the uplink carries the message at a steady rate, so chunk k is wholly in host
            // memory once the bytes up to its end have left the sender.
            size_t up_bytes = 0;
            for (size_t chunk : stage_chunks(m.num_bytes, stage_chunk_bytes_)) {
                up_bytes += chunk;
                const double ready =
                    up_bytes == m.num_bytes
                        ? d.up_end
                        : d.up_start + (d.up_end - d.up_start) * static_cast<double>(up_bytes) / m.num_bytes;
                pieces.push_back(Piece{ready, ready, i, chunk});
            }
        }
    }
    // First come, first served; a message's chunks keep their order (stable sort, equal keys).
    std::stable_sort(pieces.begin(), pieces.end(), [](const Piece& a, const Piece& b) {
        return a.ready_s != b.ready_s ? a.ready_s < b.ready_s : a.message_idx < b.message_idx;
    });
    for (const Piece& p : pieces) {
        const double busy = static_cast<double>(p.num_bytes) / bw;
        const double down_start = std::max({down_free_s_[dst_rank], p.ready_s, start_s});
        const double end = std::max(p.up_end_s, down_start + busy);
        down_free_s_[dst_rank] = end;
        down_busy_s_[dst_rank] += busy;
        last = std::max(last, end + link.latency_s);
    }
    return last;
}

double LinkEmulation::advance_to(int rank, double t_s) {
    const double before = clock_s_.at(rank);
    clock_s_[rank] = std::max(before, t_s);
    return clock_s_[rank] - before;
}

void LinkEmulation::align(const std::vector<int>& ranks) {
    double t = 0;
    for (int r : ranks) t = std::max(t, clock_s_.at(r));
    for (int r : ranks) clock_s_[r] = t;
}

}  // namespace moerig::runtime
