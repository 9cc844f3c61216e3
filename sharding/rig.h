// A rig: the cards of one host (or of several hosts joined by a network, a cluster), each with its
// resolved card spec (catalog + per-rig overrides) and its PCIe link. Loaded from configs/rigs/*.yaml.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "sharding/catalog.h"
#include "sharding/yaml_util.h"

namespace moerig::sharding {

/// How one card hangs off its host.
struct CardLink {
    uint32_t pcie_gen = 3;
    uint32_t lanes = 16;
    bool p2p = false;  // GPUDirect peer-to-peer; without it card-to-card traffic is staged through host RAM
};

/// Bytes per second per direction of a PCIe link: lanes x (gen1 0.25, gen2 0.5, gen3 0.985, gen4 1.97,
/// gen5 3.94 GB/s).
double link_bytes_per_s(const CardLink& link);
/// Per-lane rate of a PCIe generation (bytes/s); 0 for an unknown generation.
double pcie_lane_bytes_per_s(uint32_t pcie_gen);

/// One card of the rig.
struct RigCard {
    uint32_t card_idx = 0;  // across the whole rig (cluster-wide)
    uint32_t host_idx = 0;
    uint32_t local_idx = 0;  // index within its host (CUDA device order)
    CardSpec spec;           // catalog entry with this rig's overrides applied
    CardLink link;

    uint64_t usable_bytes() const { return spec.usable_bytes(); }
    double link_bytes_per_s() const { return sharding::link_bytes_per_s(link); }
};

/// Host-to-host network of a cluster.
struct NetworkLink {
    double bytes_per_s = 0;  // per direction
    double latency_s = 0;
};

struct HostSpec {
    std::string name;
    uint64_t ram_bytes = 0;
    double mem_bw_bytes_per_s = 0;
    std::vector<uint32_t> card_idx;  // RigCard::card_idx of its cards
};

struct RigSpec {
    std::string name;
    std::string description;
    std::string source;  // file it came from
    std::vector<HostSpec> hosts;
    std::vector<RigCard> cards;
    std::optional<NetworkLink> network;  // set for clusters (hosts.size() > 1)

    bool is_cluster() const { return hosts.size() > 1; }
    size_t num_cards() const { return cards.size(); }
    uint64_t total_vram_bytes() const;
    uint64_t total_usable_bytes() const;
    uint64_t total_host_ram_bytes() const;
};

/// Names of the example rigs (configs/rigs/*.yaml stems), sorted.
std::vector<std::string> catalog_rig_names();
/// A rig by catalog name or by path to a .yaml file. Unknown names -> ConfigError with close matches.
RigSpec load_rig(const std::string& name_or_path);
RigSpec load_rig(const std::string& name_or_path, const CardCatalog& cards);
/// Parses a rig document (see configs/rigs/README in the YAML files for the schema).
RigSpec parse_rig(const YamlNode& root, const CardCatalog& cards);

}  // namespace moerig::sharding
