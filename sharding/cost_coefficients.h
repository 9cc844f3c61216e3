// Every coefficient of the planner's cost and memory model, in one place, each with where it comes from.
// The cost model (cost_model.h) and memory accounting of the plan (placement.h) read only these constants;
// docs/plan.md explains how they combine. Change a number here, not in the code that uses it.
#pragma once

#include <cstdint>

namespace moerig::sharding::coeff {

// ---- Memory -------------------------------------------------------------------------------------------

/// Default per-card runtime reserve (CUDA context, cuBLAS workspace, driver): 300-500 MB measured on
/// Pascal/Turing; rigs may override it per card.
inline constexpr uint64_t kDefaultReserveBytes = 400ull << 20;
/// Activation scratch per token in flight, in units of hidden: residual, normed input, attention out,
/// router logits and FFN intermediates are F32 (4 bytes); 8 live vectors is llama.cpp's compute buffer
/// order of magnitude for one ubatch.
inline constexpr double kActivationHiddenMultiple = 8.0;
inline constexpr uint64_t kActivationBytesPerValue = 4;
/// Prefill is processed in ubatches of this many tokens (llama.cpp's default n_ubatch), which bounds
/// activation and communication buffers.
inline constexpr uint32_t kPrefillUbatchTokens = 512;
/// Hidden states cross links as F16.
inline constexpr uint64_t kWireBytesPerValue = 2;
/// Communication buffers hold send + receive copies of a ubatch's dispatched rows.
inline constexpr double kCommBufferCopies = 2.0;
/// The expert dispatcher's buffers (runtime/dispatcher.cpp) hold each dispatched row as F32 hidden values
/// followed by the token's top-k expert ids (int32) and weights (F32); the expert sums come back as F32 rows.
/// Per card it holds rows sent and received, and their sums received and sent back.
inline constexpr uint64_t kDispatchBytesPerValue = 4;
inline constexpr uint64_t kDispatchRouteBytesPerSlot = 8;
/// The dispatcher grows a buffer to 1.25x a step's need, so that a slightly larger step reuses it.
inline constexpr double kDispatchBufferGrowth = 1.25;
/// The output card holds F32 logits for one row per sequence of the batch (a step's wanted rows).
inline constexpr uint64_t kLogitsBytesPerValue = 4;
/// Fraction of host RAM the planner may fill with spilled experts (the OS, page cache for the mmap of
/// the GGUF and the staging buffers of no-P2P links need the rest).
inline constexpr double kHostRamUsableFraction = 0.75;

// ---- Memory-bound decode ------------------------------------------------------------------------------

/// Achieved fraction of a card's peak memory bandwidth when streaming quantised weights in a GEMV
/// (llama.cpp mmvq reaches 60-80% on Pascal/Turing).
inline constexpr double kMemBandwidthEfficiency = 0.70;
/// Achieved fraction of host RAM bandwidth for spilled experts computed on the CPU.
inline constexpr double kHostBandwidthEfficiency = 0.60;
/// Fixed cost per layer per card that runs it: kernel launches and synchronisation (about 8 kernels of
/// ~5 us each at batch 1 on consumer cards).
inline constexpr double kLayerOverheadS = 40e-6;

// ---- Compute-bound prefill ----------------------------------------------------------------------------

/// Achieved fraction of peak FLOP/s for quantised matmuls at ubatch 512 (dequantise + GEMM).
inline constexpr double kComputeEfficiency = 0.35;
/// FLOPs per weight per token of a matmul (multiply + add).
inline constexpr double kFlopsPerParamPerToken = 2.0;
/// Host CPU FLOP/s for spilled experts (a mining-board CPU, a few AVX2 cores).
inline constexpr double kHostFlops = 200e9;
/// Host RAM bandwidth when a rig does not say: dual-channel DDR4-2400 (38.4 GB/s peak).
inline constexpr double kDefaultHostBandwidth = 38.4e9;

// ---- Links --------------------------------------------------------------------------------------------

/// PCIe bytes/s per lane per direction by generation (index = gen): 2.5, 5, 8, 16, 32 GT/s with
/// 8b/10b (gen1-2) or 128b/130b (gen3+) encoding (shared/REFERENCE.md).
inline constexpr double kPcieLaneBytesPerS[] = {0.0, 0.25e9, 0.5e9, 0.985e9, 1.969e9, 3.938e9};
/// Achieved fraction of the PCIe line rate for DMA copies of a few hundred KB.
inline constexpr double kPcieEfficiency = 0.80;
/// Without P2P a card-to-card copy is staged through host memory: it crosses PCIe twice, sender's link
/// then receiver's link, and adds a host memcpy (NCCL SHM transport).
inline constexpr double kNoP2pCrossings = 2.0;
/// Latency of one collective step between cards of one host: NCCL launch + proxy handshake.
/// P2P ~10 us; staged through host (SHM) ~25 us.
inline constexpr double kP2pLatencyS = 10e-6;
inline constexpr double kStagedLatencyS = 25e-6;
/// Latency of one exchange across hosts (NCCL socket transport over 10 GbE, incl. kernel stack).
inline constexpr double kNetworkLatencyS = 60e-6;
/// Default network between hosts when a rig says nothing: 10 GbE at 94% goodput.
inline constexpr double kDefaultNetworkBytesPerS = 10e9 / 8 * 0.94;

// ---- Placement ----------------------------------------------------------------------------------------

/// Pseudo-count (tokens) added to every expert's planning count from a trace: shrinks a short, noisy trace
/// towards uniform so that a placement generalises to traffic it was not planned on, and vanishes for
/// long traces (2048 tokens x top-8 over 256 experts is 64 counts per expert on average).
inline constexpr double kTracePriorCount = 4.0;
/// Replicate an expert only while its share of a layer's load exceeds this multiple of the card's fair
/// share; below it a copy costs memory for little balance.
inline constexpr double kReplicationMinGain = 1.05;
/// Memory reserved for the next KV growth before any replica is placed (fraction of free memory).
inline constexpr double kReplicaHeadroomFraction = 0.05;

}  // namespace moerig::sharding::coeff
