// Rig loading: resolves every card against the card catalog (with per-rig overrides), checks links and
// sizes, and expands "count: N" entries into one RigCard per physical card, hosts in file order.
#include "sharding/rig.h"

#include <algorithm>

#include "kernels/error.h"
#include "sharding/suggest.h"

namespace moerig::sharding {
namespace {

namespace fs = std::filesystem;

bool is_yaml_path(const std::string& s) {
    const auto ext = fs::path(s).extension().string();
    return ext == ".yaml" || ext == ".yml" || s.find('/') != std::string::npos;
}

void parse_cards(const YamlNode& list, const CardCatalog& catalog, uint32_t host_idx, RigSpec& rig) {
    uint32_t local_idx = 0;
    for (const auto& entry : list.items()) {
        entry.check_keys({"card", "count", "pcie_gen", "lanes", "p2p", "vram", "reserve", "mem_bw"});
        const auto card_node = entry.at("card");
        CardSpec spec;
        try {
            spec = catalog.find(card_node.as_string());
        } catch (const ConfigError& e) {
            MOERIG_THROW(ConfigError, "{}: {}", card_node.where(), e.what());
        }
        const uint64_t count = entry.u64("count", 1);
        MOERIG_CHECK(count >= 1 && count <= 64, ConfigError, "{}: expected 1..64 cards, got {}", entry.where("count"),
                     count);
        CardLink link;
        link.pcie_gen = static_cast<uint32_t>(entry.u64("pcie_gen", spec.max_pcie_gen));
        link.lanes = static_cast<uint32_t>(entry.u64("lanes", spec.max_pcie_lanes));
        link.p2p = entry.boolean("p2p", false);
        MOERIG_CHECK(pcie_lane_bytes_per_s(link.pcie_gen) > 0, ConfigError, "{}: expected PCIe gen 1..5, got {}",
                     entry.where("pcie_gen"), link.pcie_gen);
        MOERIG_CHECK(link.lanes == 1 || link.lanes == 2 || link.lanes == 4 || link.lanes == 8 || link.lanes == 16,
                     ConfigError, "{}: expected 1, 2, 4, 8 or 16 lanes, got {}", entry.where("lanes"), link.lanes);
        // A card cannot run its link faster than it negotiates, whatever the slot offers.
        link.pcie_gen = std::min(link.pcie_gen, spec.max_pcie_gen);
        link.lanes = std::min(link.lanes, spec.max_pcie_lanes);
        spec.vram_bytes = entry.bytes("vram", spec.vram_bytes);
        spec.reserve_bytes = entry.bytes("reserve", spec.reserve_bytes);
        spec.mem_bw_bytes_per_s = entry.rate("mem_bw", spec.mem_bw_bytes_per_s);
        MOERIG_CHECK(spec.vram_bytes > spec.reserve_bytes, ConfigError,
                     "{}: reserve ({} bytes) must be below the card's vram ({} bytes)", entry.where(),
                     spec.reserve_bytes, spec.vram_bytes);
        for (uint64_t i = 0; i < count; ++i) {
            RigCard card;
            card.card_idx = static_cast<uint32_t>(rig.cards.size());
            card.host_idx = host_idx;
            card.local_idx = local_idx++;
            card.spec = spec;
            card.link = link;
            rig.hosts[host_idx].card_idx.push_back(card.card_idx);
            rig.cards.push_back(std::move(card));
        }
    }
    MOERIG_CHECK(local_idx > 0, ConfigError, "{}: a host needs at least one card", list.where());
}

HostSpec parse_host(const YamlNode& h, const std::string& default_name) {
    h.check_keys({"name", "ram", "mem_bw", "cards"});
    HostSpec host;
    host.name = h.str("name", default_name);
    host.ram_bytes = h.bytes("ram");
    host.mem_bw_bytes_per_s = h.rate("mem_bw");
    MOERIG_CHECK(host.ram_bytes > 0, ConfigError, "{}: host RAM must be > 0", h.where("ram"));
    return host;
}

}  // namespace

double pcie_lane_bytes_per_s(uint32_t pcie_gen) {
    switch (pcie_gen) {
        case 1:
            return 0.25e9;
        case 2:
            return 0.5e9;
        case 3:
            return 0.985e9;
        case 4:
            return 1.97e9;
        case 5:
            return 3.94e9;
        default:
            return 0;
    }
}

double link_bytes_per_s(const CardLink& link) {
    return pcie_lane_bytes_per_s(link.pcie_gen) * link.lanes;
}

uint64_t RigSpec::total_vram_bytes() const {
    uint64_t t = 0;
    for (const auto& c : cards) t += c.spec.vram_bytes;
    return t;
}

uint64_t RigSpec::total_usable_bytes() const {
    uint64_t t = 0;
    for (const auto& c : cards) t += c.usable_bytes();
    return t;
}

uint64_t RigSpec::total_host_ram_bytes() const {
    uint64_t t = 0;
    for (const auto& h : hosts) t += h.ram_bytes;
    return t;
}

RigSpec parse_rig(const YamlNode& root, const CardCatalog& catalog) {
    root.check_keys({"name", "description", "host", "cards", "hosts", "network"});
    RigSpec rig;
    rig.name = root.str("name");
    rig.description = root.str("description", "");
    rig.source = root.file;
    if (auto hosts = root.get("hosts")) {
        MOERIG_CHECK(!root.has("cards") && !root.has("host"), ConfigError,
                     "{}: use either hosts [...] (cluster) or host + cards (one host), not both", root.where());
        for (const auto& h : hosts->items()) {
            rig.hosts.push_back(parse_host(h, "host" + std::to_string(rig.hosts.size())));
            parse_cards(h.at("cards"), catalog, static_cast<uint32_t>(rig.hosts.size() - 1), rig);
        }
        MOERIG_CHECK(!rig.hosts.empty(), ConfigError, "{}: expected at least one host", hosts->where());
    } else {
        rig.hosts.push_back(parse_host(root.at("host"), "host0"));
        parse_cards(root.at("cards"), catalog, 0, rig);
    }
    if (auto net = root.get("network")) {
        net->check_keys({"bandwidth", "latency_us"});
        NetworkLink link;
        link.bytes_per_s = net->rate("bandwidth");
        link.latency_s = net->f64("latency_us", 50) * 1e-6;
        MOERIG_CHECK(link.bytes_per_s > 0 && link.latency_s >= 0, ConfigError,
                     "{}: bandwidth must be > 0 and latency_us >= 0", net->where());
        rig.network = link;
    }
    MOERIG_CHECK(rig.hosts.size() == 1 || rig.network.has_value(), ConfigError,
                 "{}: a rig with {} hosts needs network {{bandwidth, latency_us}}", root.where(), rig.hosts.size());
    return rig;
}

std::vector<std::string> catalog_rig_names() {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(config_dir() / "rigs", ec)) {
        if (e.path().extension() == ".yaml" || e.path().extension() == ".yml") out.push_back(e.path().stem().string());
    }
    std::sort(out.begin(), out.end());
    return out;
}

RigSpec load_rig(const std::string& name_or_path, const CardCatalog& cards) {
    if (is_yaml_path(name_or_path)) return parse_rig(YamlNode::load_file(name_or_path), cards);
    const auto names = catalog_rig_names();
    for (const auto& n : names) {
        if (n == name_or_path) return parse_rig(YamlNode::load_file(config_dir() / "rigs" / (n + ".yaml")), cards);
    }
    MOERIG_THROW(ConfigError, "unknown rig '{}'{}; example rigs are in {} (or pass a path to a .yaml file)",
                 name_or_path, did_you_mean(name_or_path, names), (config_dir() / "rigs").string());
}

RigSpec load_rig(const std::string& name_or_path) {
    return load_rig(name_or_path, CardCatalog::load_default());
}

}  // namespace moerig::sharding
