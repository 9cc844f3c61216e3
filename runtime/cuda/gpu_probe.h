// Discovery of the local GPUs for `moerig probe`: names, VRAM, memory bandwidth, the PCIe link each card has
// trained to (from sysfs, no NVML needed), the P2P matrix, and a rig YAML in the configs/rigs format.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace moerig::runtime::cuda {

struct GpuInfo {
    int gpu_idx = 0;
    std::string name;          // as CUDA reports it, e.g. "NVIDIA GeForce RTX 3060"
    std::string catalog_name;  // matching configs/cards.yaml entry, empty when none matches
    int cc_major = 0, cc_minor = 0;
    size_t vram_bytes = 0;
    size_t free_bytes = 0;
    double mem_bandwidth_gbs = 0;              // from memory clock and bus width
    std::string pci_bus_id;                    // sysfs form, e.g. "0000:01:00.0"
    int pcie_gen = 0, pcie_lanes = 0;          // as currently trained (0 = unknown)
    int pcie_gen_max = 0, pcie_lanes_max = 0;  // what the link can reach
};

struct LocalRig {
    std::string host_name;
    size_t host_ram_bytes = 0;
    double host_mem_bandwidth_gbs = 0;  // measured memcpy (read + write)
    std::vector<GpuInfo> gpus;
    std::vector<std::vector<bool>> p2p;  // p2p[a][b]: a can access b's memory directly
};

/// Probes this machine. Never throws for a missing driver or GPU: gpus is then empty.
LocalRig probe_local_rig();

/// The rig as YAML in the configs/rigs format (one card entry per GPU, in CUDA order).
std::string rig_yaml(const LocalRig& rig);
/// The rig as JSON (everything probed, including the P2P matrix).
std::string rig_json(const LocalRig& rig);

}  // namespace moerig::runtime::cuda
