// `moerig probe [--json] [--out rig.yaml]`: lists the local GPUs with their memory, trained PCIe link and
// P2P reachability, and writes them as a rig file for `moerig plan --rig`. Exits 0 when there is no GPU.
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "kernels/error.h"
#include "tools/moerig/command.h"

#ifdef MOERIG_HAVE_CUDA
#include "runtime/cuda/gpu_probe.h"
#endif

namespace moerig::cli {
namespace {

struct ProbeArgs {
    bool json = false;
    std::string out;
};

int run_probe(const ProbeArgs& a) {
#ifdef MOERIG_HAVE_CUDA
    const auto rig = runtime::cuda::probe_local_rig();
    if (a.json) {
        std::printf("%s\n", runtime::cuda::rig_json(rig).c_str());
    } else if (rig.gpus.empty()) {
        std::printf("moerig probe: no CUDA GPU found on %s (no driver, or no device visible)\n", rig.host_name.c_str());
    } else {
        for (const auto& g : rig.gpus) {
            std::string link = "link unknown";
            if (g.pcie_gen > 0) {
                link = fmt::format("PCIe gen{} x{} (max gen{} x{})", g.pcie_gen, g.pcie_lanes, g.pcie_gen_max,
                                   g.pcie_lanes_max);
            }
            std::printf("GPU %d: %s, sm_%d%d, %.1f GiB (%.1f free), %.0f GB/s, %s, %s%s\n", g.gpu_idx, g.name.c_str(),
                        g.cc_major, g.cc_minor, g.vram_bytes / 1073741824.0, g.free_bytes / 1073741824.0,
                        g.mem_bandwidth_gbs, g.pci_bus_id.c_str(), link.c_str(),
                        g.catalog_name.empty() ? " [not in cards.yaml]" : fmt::format(" [{}]", g.catalog_name).c_str());
        }
    }
    if (!a.out.empty()) {
        if (rig.gpus.empty()) {
            std::fprintf(stderr, "moerig probe: no GPU, so no rig file written to %s\n", a.out.c_str());
            return 0;
        }
        std::ofstream f(a.out);
        MOERIG_CHECK(f.good(), ConfigError, "probe: cannot write the rig file {}", a.out);
        f << runtime::cuda::rig_yaml(rig);
        MOERIG_CHECK(f.good(), ConfigError, "probe: writing the rig file {} failed", a.out);
        if (!a.json) std::printf("wrote %s\n", a.out.c_str());
    }
    return 0;
#else
    (void)a;
    std::printf("moerig probe: CUDA support was not built into this binary (configure with nvcc available)\n");
    return 0;
#endif
}

const Registrar kProbe(
    "probe", "list local GPUs (VRAM, trained PCIe link, P2P) and write them as a rig file",
    [](CLI::App& sub) -> std::function<int()> {
        auto a = std::make_shared<ProbeArgs>();
        sub.add_flag("--json", a->json, "print JSON");
        sub.add_option("--out", a->out, "write the rig as YAML (configs/rigs format) to this file");
        return [a] { return run_probe(*a); };
    },
    80);

}  // namespace
}  // namespace moerig::cli
