// GPU discovery: CUDA device properties and attributes, PCIe link state from
// /sys/bus/pci/devices/<bus id>/{current,max}_link_{speed,width}, cudaDeviceCanAccessPeer for P2P, and the
// card catalog to name each GPU the way configs/rigs does.
#include "runtime/cuda/gpu_probe.h"

#include <cuda_runtime.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kernels/cuda/check.h"
#include "kernels/error.h"
#include "sharding/catalog.h"

namespace moerig::runtime::cuda {
namespace {

std::string read_sysfs(const std::string& path) {
    std::ifstream in(path);
    std::string s;
    std::getline(in, s);
    return s;
}

/// "8.0 GT/s PCIe" -> 3 (GT/s per lane of each generation).
int pcie_gen_from_speed(const std::string& speed) {
    const double gts = std::atof(speed.c_str());
    if (gts <= 0) return 0;
    const double kRates[] = {2.5, 5.0, 8.0, 16.0, 32.0, 64.0};
    for (int g = 0; g < 6; ++g) {
        if (std::fabs(gts - kRates[g]) < 0.5) return g + 1;
    }
    return 0;
}

/// CUDA's "00000000:01:00.0" -> sysfs "0000:01:00.0".
std::string sysfs_bus_id(const char* cuda_id) {
    std::string s(cuda_id);
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    const auto colon = s.find(':');
    if (colon == std::string::npos) return s;
    const unsigned long domain = std::strtoul(s.substr(0, colon).c_str(), nullptr, 16);
    return fmt::format("{:04x}{}", domain, s.substr(colon));
}

std::string match_catalog(const std::string& cuda_name, size_t vram_bytes) {
    sharding::CardCatalog catalog;
    try {
        catalog = sharding::CardCatalog::load_default();
    } catch (const Error&) {
        return {};
    }
    std::string n = cuda_name;
    for (const char* prefix : {"NVIDIA ", "GeForce ", "Tesla "}) {
        if (n.rfind(prefix, 0) == 0) n = n.substr(std::strlen(prefix));
    }
    const long gib = std::lround(static_cast<double>(vram_bytes) / (1024.0 * 1024 * 1024));
    for (const std::string& candidate : {cuda_name, n, fmt::format("{} {}GB", n, gib), fmt::format("Tesla {}", n),
                                         fmt::format("Tesla {} {}GB", n, gib)}) {
        if (const auto* spec = catalog.find_opt(candidate)) return spec->name;
    }
    return {};
}

double measure_host_bandwidth_gbs() {
    constexpr size_t kBytes = size_t{256} << 20;
    std::vector<char> a(kBytes, 1), b(kBytes, 0);
    std::memcpy(b.data(), a.data(), kBytes);  // fault the pages in
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 3; ++i) std::memcpy(b.data(), a.data(), kBytes);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return s > 0 ? 2.0 * 3 * kBytes / s / 1e9 : 0;
}

std::string gib(size_t bytes) {
    return fmt::format("{:.1f} GiB", static_cast<double>(bytes) / (1024.0 * 1024 * 1024));
}

}  // namespace

LocalRig probe_local_rig() {
    LocalRig rig;
    char host[256] = {};
    rig.host_name = gethostname(host, sizeof host - 1) == 0 ? host : "rig0";
    rig.host_ram_bytes = static_cast<size_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
    rig.host_mem_bandwidth_gbs = measure_host_bandwidth_gbs();
    const int n = moerig::cuda::device_count();
    for (int g = 0; g < n; ++g) {
        GpuInfo info;
        info.gpu_idx = g;
        cudaDeviceProp prop{};
        MOERIG_CUDA_CHECK(cudaGetDeviceProperties(&prop, g));
        info.name = prop.name;
        info.cc_major = prop.major;
        info.cc_minor = prop.minor;
        info.vram_bytes = prop.totalGlobalMem;
        MOERIG_CUDA_CHECK(cudaSetDevice(g));
        size_t free_b = 0, total_b = 0;
        MOERIG_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
        info.free_bytes = free_b;
        int clock_khz = 0, bus_bits = 0;
        if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, g) == cudaSuccess &&
            cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, g) == cudaSuccess) {
            info.mem_bandwidth_gbs = 2.0 * clock_khz * 1e3 * bus_bits / 8.0 / 1e9;
        } else {
            (void)cudaGetLastError();
        }
        char bus_id[64] = {};
        if (cudaDeviceGetPCIBusId(bus_id, sizeof bus_id, g) == cudaSuccess) {
            info.pci_bus_id = sysfs_bus_id(bus_id);
            const std::string dir = "/sys/bus/pci/devices/" + info.pci_bus_id + "/";
            info.pcie_gen = pcie_gen_from_speed(read_sysfs(dir + "current_link_speed"));
            info.pcie_lanes = std::atoi(read_sysfs(dir + "current_link_width").c_str());
            info.pcie_gen_max = pcie_gen_from_speed(read_sysfs(dir + "max_link_speed"));
            info.pcie_lanes_max = std::atoi(read_sysfs(dir + "max_link_width").c_str());
        } else {
            (void)cudaGetLastError();
        }
        info.catalog_name = match_catalog(info.name, info.vram_bytes);
        rig.gpus.push_back(std::move(info));
    }
    rig.p2p.assign(n, std::vector<bool>(n, false));
    for (int a = 0; a < n; ++a) {
        for (int b = 0; b < n; ++b) {
            int can = 0;
            if (a != b && cudaDeviceCanAccessPeer(&can, a, b) == cudaSuccess) rig.p2p[a][b] = can != 0;
        }
    }
    (void)cudaGetLastError();
    return rig;
}

std::string rig_yaml(const LocalRig& rig) {
    std::string y;
    y += fmt::format("# Written by `moerig probe` on {}: {} GPU(s). PCIe links are as currently trained; an idle\n",
                     rig.host_name, rig.gpus.size());
    y += "# GPU may train down to save power, so probe while the cards are busy to see their real links.\n";
    for (size_t a = 0; a < rig.p2p.size(); ++a) {
        std::string row;
        for (size_t b = 0; b < rig.p2p.size(); ++b) row += a == b ? " -" : (rig.p2p[a][b] ? " Y" : " N");
        y += fmt::format("# P2P from GPU {}:{}\n", a, row);
    }
    y += fmt::format("name: probed-{}\n", rig.host_name);
    y += fmt::format("description: {} GPU(s) found by moerig probe on {}\n", rig.gpus.size(), rig.host_name);
    y += "host:\n";
    y += fmt::format("  name: {}\n", rig.host_name);
    y += fmt::format("  ram: {}\n", gib(rig.host_ram_bytes));
    y += fmt::format("  mem_bw: {:.1f} GB/s\n", rig.host_mem_bandwidth_gbs > 0 ? rig.host_mem_bandwidth_gbs : 10.0);
    y += "cards:\n";
    for (const auto& g : rig.gpus) {
        bool p2p_all = rig.gpus.size() > 1;
        for (size_t b = 0; b < rig.gpus.size(); ++b) {
            if (static_cast<int>(b) != g.gpu_idx && !rig.p2p[g.gpu_idx][b]) p2p_all = false;
        }
        if (g.catalog_name.empty()) {
            y += fmt::format("  # GPU {} ({}, sm_{}{}) is not in configs/cards.yaml: add it there to plan with it.\n",
                             g.gpu_idx, g.name, g.cc_major, g.cc_minor);
        } else {
            y += fmt::format("  # GPU {}: {} (sm_{}{}), PCI {}\n", g.gpu_idx, g.name, g.cc_major, g.cc_minor,
                             g.pci_bus_id);
        }
        y += fmt::format("  - card: {}\n", g.catalog_name.empty() ? g.name : g.catalog_name);
        y += "    count: 1\n";
        if (g.pcie_gen > 0) y += fmt::format("    pcie_gen: {}\n", std::min(g.pcie_gen, 5));
        if (g.pcie_lanes > 0) y += fmt::format("    lanes: {}\n", g.pcie_lanes);
        y += fmt::format("    p2p: {}\n", p2p_all ? "true" : "false");
        y += fmt::format("    vram: {}\n", gib(g.vram_bytes));
        if (g.mem_bandwidth_gbs > 0) y += fmt::format("    mem_bw: {:.0f} GB/s\n", g.mem_bandwidth_gbs);
    }
    return y;
}

std::string rig_json(const LocalRig& rig) {
    nlohmann::json j;
    j["host"] = {
        {"name", rig.host_name}, {"ram_bytes", rig.host_ram_bytes}, {"mem_bandwidth_gbs", rig.host_mem_bandwidth_gbs}};
    j["gpus"] = nlohmann::json::array();
    for (const auto& g : rig.gpus) {
        j["gpus"].push_back({{"index", g.gpu_idx},
                             {"name", g.name},
                             {"catalog_name", g.catalog_name},
                             {"compute_capability", fmt::format("{}.{}", g.cc_major, g.cc_minor)},
                             {"vram_bytes", g.vram_bytes},
                             {"free_bytes", g.free_bytes},
                             {"mem_bandwidth_gbs", g.mem_bandwidth_gbs},
                             {"pci_bus_id", g.pci_bus_id},
                             {"pcie_gen", g.pcie_gen},
                             {"pcie_lanes", g.pcie_lanes},
                             {"pcie_gen_max", g.pcie_gen_max},
                             {"pcie_lanes_max", g.pcie_lanes_max}});
    }
    j["p2p"] = rig.p2p;
    return j.dump(2);
}

}  // namespace moerig::runtime::cuda
