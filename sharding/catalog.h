// The YAML catalogs under configs/: model architectures (configs/models/<name>.yaml) and card specs
// (configs/cards.yaml). Finds the config directory: env MOERIG_CONFIG_DIR, else the compiled-in
// MOERIG_CONFIG_DIR. Unknown names raise ConfigError listing close matches.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "sharding/model_spec.h"
#include "sharding/yaml_util.h"

namespace moerig::sharding {

/// configs/ root: $MOERIG_CONFIG_DIR when set, else the source tree's configs/ (compile definition).
std::filesystem::path config_dir();

/// Names of the catalog models (file stems of configs/models/*.yaml), sorted.
std::vector<std::string> catalog_model_names();
/// Reads configs/models/<name>.yaml (name or alias, case-insensitive). ConfigError with suggestions if unknown.
ModelSpec load_catalog_model(const std::string& name);
/// Reads a model YAML file in the catalog format.
ModelSpec load_model_yaml(const std::filesystem::path& file);
/// Parses one model document (the catalog format); `node.file` is used in messages.
ModelSpec parse_model_spec(const YamlNode& node);

/// One GPU model from configs/cards.yaml. Rates are per second; flops count an FMA as two.
struct CardSpec {
    std::string name;  // "P106-100"
    std::vector<std::string> aliases;
    double compute_capability = 0;  // 6.1
    uint64_t vram_bytes = 0;
    double mem_bw_bytes_per_s = 0;
    double fp32_flops = 0;
    double fp16_flops = 0;  // non-tensor-core rate (Pascal consumer: 1/64 of fp32)
    double int8_ops = 0;    // dp4a rate (4x fp32 on 6.1+), 0 when the card has none
    uint32_t max_pcie_gen = 3;
    uint32_t max_pcie_lanes = 16;
    double tdp_watts = 0;
    uint64_t reserve_bytes = 0;  // CUDA context + runtime scratch kept out of the planner's budget

    uint64_t usable_bytes() const { return vram_bytes > reserve_bytes ? vram_bytes - reserve_bytes : 0; }
};

/// The card catalog.
class CardCatalog {
  public:
    /// Loads config_dir()/cards.yaml.
    static CardCatalog load_default();
    static CardCatalog load(const std::filesystem::path& file);
    static CardCatalog parse(const YamlNode& root);

    const std::vector<CardSpec>& cards() const { return cards_; }
    /// By name or alias, case-insensitive, ignoring spaces/dashes ("rtx3060-12gb" finds "RTX 3060 12GB").
    /// ConfigError listing close matches when unknown.
    const CardSpec& find(const std::string& name) const;
    const CardSpec* find_opt(const std::string& name) const;
    std::vector<std::string> names() const;

  private:
    std::vector<CardSpec> cards_;
    std::string file_;
};

}  // namespace moerig::sharding
