// PCIe link model: per-lane rates, cut-through (P2P) versus staged (through host memory) messages,
// and per-rank virtual clocks advanced only by byte counts, so modelled times are exact.
#include "runtime/link_emulation.h"

#include <fmt/format.h>

#include <algorithm>

#include "kernels/error.h"
#include "sharding/rig.h"

namespace moerig::runtime {

double pcie_lane_bytes_per_s(int pcie_gen) {
    // The rate table lives with the rig model (sharding/rig.h); here an unknown generation is an error.
    const double rate = pcie_gen > 0 ? sharding::pcie_lane_bytes_per_s(static_cast<uint32_t>(pcie_gen)) : 0.0;
    MOERIG_CHECK(rate > 0, ConfigError, "PCIe generation {} is not known: expected 1 to 5", pcie_gen);
    return rate;
}

double LinkSpec::bytes_per_s() const {
    MOERIG_CHECK(lanes >= 1 && lanes <= 32, ConfigError, "PCIe link with {} lanes: expected 1 to 32", lanes);
    return pcie_lane_bytes_per_s(pcie_gen) * lanes;
}

std::string LinkSpec::describe() const {
    return fmt::format("PCIe {}.0 x{}, {}", pcie_gen, lanes, p2p ? "P2P" : "staged via host");
}

LinkEmulation::LinkEmulation(std::vector<LinkSpec> links, bool sleep)
    : links_(std::move(links)),
      sleep_(sleep),
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
    const double b = static_cast<double>(num_bytes);
    const double up = b / links_.at(src_rank).bytes_per_s();
    const double down = b / links_.at(dst_rank).bytes_per_s();
    return links_[dst_rank].latency_s + (direct(src_rank, dst_rank) ? std::max(up, down) : up + down);
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
    for (size_t i = 0; i < messages.size(); ++i) {
        const LinkMessage& m = messages[i];
        const Departure& d = departures[i];
        if (m.src_rank == dst_rank) {
            last = std::max(last, d.up_end);
            continue;
        }
        const double busy = static_cast<double>(m.num_bytes) / bw;
        double end;
        if (direct(m.src_rank, dst_rank)) {
            // Cut-through: the downlink streams while the uplink does; the slower side sets the pace.
            const double down_start = std::max({down_free_s_[dst_rank], d.up_start, start_s});
            end = std::max(d.up_end, down_start + busy);
        } else {
            // Staged: the whole message lands in host memory before it crosses the second link.
            const double down_start = std::max({down_free_s_[dst_rank], d.up_end, start_s});
            end = down_start + busy;
        }
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
