// Cost model: turns a model account and a rig into a PlanProblem, and predicts the speed of a Layout.
// Decode is memory-bound (bytes read / achieved bandwidth, roofline against FLOPs), prefill compute-bound;
// links cost latency + bytes / achieved rate, halved without P2P. Formulas: docs/plan.md.
#include "sharding/cost_model.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/error.h"
#include "sharding/cost_coefficients.h"

namespace moerig::sharding {
namespace {

proto::ModelSpec model_proto(const ModelAccount& model, uint64_t expert_bytes, uint64_t kv_per_token) {
    const ModelSpec& spec = model.spec;
    proto::ModelSpec m;
    m.set_name(spec.name);
    m.set_arch(spec.arch);
    m.set_quant(model.quant);
    m.set_num_layers(spec.num_layers);
    m.set_num_dense_layers(spec.num_experts > 0 ? spec.num_leading_dense : spec.num_layers);
    m.set_hidden(static_cast<uint32_t>(spec.hidden));
    m.set_num_experts(spec.num_experts);
    m.set_num_experts_used(spec.num_experts_used);
    m.set_num_shared_experts(spec.num_shared_experts);
    m.set_total_params(model.total_params);
    m.set_active_params(model.active_params);
    m.set_total_bytes(model.total_bytes);
    m.set_expert_bytes(expert_bytes);
    m.set_kv_bytes_per_token(kv_per_token);
    m.set_max_context(static_cast<uint32_t>(std::min<uint64_t>(spec.max_context, UINT32_MAX)));
    m.set_embedding_bytes(model.embedding_bytes);
    m.set_output_bytes(model.output_bytes);
    for (const auto& layer : model.layers) m.add_layer_dense_bytes(layer.stage_bytes());
    return m;
}

// The share of a token-slot probability served by one copy; a token reaches a copy with probability p.
double copy_prob(const LayerCost& layer, uint32_t expert_idx, const ExpertCopy& copy) {
    return std::min(1.0, layer.expert_prob[expert_idx] * copy.share);
}

constexpr double kNever = std::numeric_limits<double>::infinity();

double link_seconds(double bytes, double rate) {
    return rate > 0 ? bytes / rate : 0.0;
}

// Per-target scratch of one layer's expert work: cards first, then hosts.
struct TargetWork {
    double read_bytes = 0;
    double flops = 0;
    double log_miss = 0;        // log P(a token sends nothing to this target)
    std::vector<double> touch;  // per copy held: P(a pass's tokens use it), i.e. its weights are read
    bool used = false;
};

struct PassTotals {
    std::vector<double> group_s;
    std::vector<double>* card_read = nullptr;
    std::vector<double>* card_link = nullptr;
};

// Seconds for `tokens` tokens (from `seqs` sequences of `context` cached tokens) to pass every layer once;
// per-group seconds in totals.group_s (groups run one after the other for one ubatch). logits_tokens: rows
// of the lm head to compute.
double pass_seconds(const PlanProblem& problem, const Layout& layout, double tokens, double seqs, double context,
                    double logits_tokens, PassTotals& totals) {
    const uint32_t num_cards = problem.num_cards();
    std::vector<TargetWork> work(num_cards + problem.hosts.size());
    std::vector<uint32_t> used_targets;
    std::vector<HolderTime> holders;
    totals.group_s.assign(layout.groups.size(), 0.0);
    const double wire_row = static_cast<double>(problem.hidden) * coeff::kWireBytesPerValue;
    double total = 0.0;
    for (uint32_t l = 0; l < problem.num_layers(); ++l) {
        const LayerCost& layer = problem.layers[l];
        const uint32_t s = layout.stage_card[l];
        const CardCost& sc = problem.cards[s];
        const double kv_tokens = layer.kv_window ? std::min<double>(context, layer.kv_window) : context;
        const double stage_read = layer.stage_bytes + seqs * kv_tokens * layer.kv_bytes_per_token;
        double t =
            std::max(stage_read / sc.mem_bw, coeff::kFlopsPerParamPerToken * layer.stage_params * tokens / sc.flops) +
            coeff::kLayerOverheadS;
        if (totals.card_read) (*totals.card_read)[s] += stage_read;

        if (layer.num_experts > 0) {
            used_targets.clear();
            for (uint32_t e = 0; e < layer.num_experts; ++e) {
                for (const ExpertCopy& copy : layout.experts[l][e]) {
                    const double p = copy_prob(layer, e, copy);
                    if (p <= 0) continue;
                    const uint32_t target = copy.card_idx == kOnHost ? num_cards + copy.host_idx : copy.card_idx;
                    TargetWork& w = work[target];
                    if (!w.used) {
                        w.used = true;
                        used_targets.push_back(target);
                    }
                    const double touched = 1.0 - std::pow(1.0 - p, tokens);
                    w.read_bytes += touched * problem.expert_bytes;
                    w.touch.push_back(touched);
                    w.flops += coeff::kFlopsPerParamPerToken * problem.expert_params * tokens * p;
                    w.log_miss += p < 1.0 ? std::log1p(-p) : -1e30;
                }
            }
            double sent_bytes = 0, max_recv_s = 0, net_bytes = 0, latency = 0;
            holders.resize(used_targets.size());
            for (size_t ti = 0; ti < used_targets.size(); ++ti) {
                const uint32_t target = used_targets[ti];
                TargetWork& w = work[target];
                double bw, fl;
                if (target < num_cards) {
                    bw = problem.cards[target].mem_bw;
                    fl = problem.cards[target].flops;
                    if (totals.card_read) (*totals.card_read)[target] += w.read_bytes;
                } else {
                    bw = problem.hosts[target - num_cards].mem_bw;
                    fl = problem.hosts[target - num_cards].flops;
                }
                // Time if n of its copies are read (FLOPs follow the expected rows, not n).
                HolderTime& h = holders[ti];
                copies_read_distribution(w.touch, h.prob);
                h.seconds.resize(h.prob.size());
                for (size_t n = 0; n < h.prob.size(); ++n) {
                    h.seconds[n] = std::max(static_cast<double>(n) * problem.expert_bytes / bw, w.flops / fl) +
                                   coeff::kLayerOverheadS;
                }
                if (target != s) {
                    const double bytes = tokens * (1.0 - std::exp(w.log_miss)) * wire_row;
                    sent_bytes += bytes;
                    if (target < num_cards) {
                        const CardCost& tc = problem.cards[target];
                        max_recv_s = std::max(max_recv_s, link_seconds(bytes, tc.peer_bw));
                        latency = std::max(latency, std::max(sc.peer_latency_s, tc.peer_latency_s));
                        if (tc.host_idx != sc.host_idx) {
                            net_bytes += bytes;
                            latency = std::max(latency, problem.net_latency_s);
                        }
                        if (totals.card_link) (*totals.card_link)[target] += 2 * bytes;
                    } else {
                        latency = std::max(latency, sc.peer_latency_s);
                    }
                }
                w.read_bytes = w.flops = w.log_miss = 0;
                w.touch.clear();
                w.used = false;
            }
            const double expert_s = expected_max_seconds(holders);
            if (sent_bytes > 0) {
                // Dispatch and combine: the stage card's link carries every row; receivers run in parallel.
                const double one_way = latency + std::max({link_seconds(sent_bytes, sc.peer_bw), max_recv_s,
                                                           link_seconds(net_bytes, problem.net_bw)});
                t += 2 * one_way;
                if (totals.card_link) (*totals.card_link)[s] += 2 * sent_bytes;
            }
            t += expert_s;
        }
        // Hand the hidden states to the next stage.
        if (l + 1 < problem.num_layers() && layout.stage_card[l + 1] != s) {
            const CardCost& nc = problem.cards[layout.stage_card[l + 1]];
            const double bytes = tokens * wire_row;
            double hop =
                std::max(sc.peer_latency_s, nc.peer_latency_s) + link_seconds(bytes, std::min(sc.peer_bw, nc.peer_bw));
            if (nc.host_idx != sc.host_idx) hop += problem.net_latency_s + link_seconds(bytes, problem.net_bw);
            t += hop;
            if (totals.card_link) {
                (*totals.card_link)[s] += bytes;
                (*totals.card_link)[layout.stage_card[l + 1]] += bytes;
            }
        }
        totals.group_s[layout.layer_group[l]] += t;
        total += t;
    }
    const CardCost& lc = problem.cards[layout.last_card];
    const double head_s = std::max(problem.output_bytes / lc.mem_bw,
                                   coeff::kFlopsPerParamPerToken * problem.output_params * logits_tokens / lc.flops);
    if (totals.card_read) (*totals.card_read)[layout.last_card] += problem.output_bytes;
    totals.group_s[layout.layer_group.back()] += head_s;
    return total + head_s;
}

}  // namespace

void copies_read_distribution(std::span<const double> touch, std::vector<double>& prob) {
    prob.assign(touch.size() + 1, 0.0);
    prob[0] = 1.0;
    for (size_t i = 0; i < touch.size(); ++i) {
        for (size_t n = i + 1; n > 0; --n) prob[n] = prob[n] * (1.0 - touch[i]) + prob[n - 1] * touch[i];
        prob[0] *= 1.0 - touch[i];
    }
}

// E[max over holders of their time]: the layer waits for the slowest holder, and which experts a pass touches
// is random, so the slowest is slower on average than the holder with the most expected work (at one token,
// top-8 of 32 experts over 4 cards reads 2 experts per card on average but 3.3 on the busiest). Holders are
// taken as independent. F(t) = prod_h P(T_h <= t); E[max] = sum over support points t of t (F(t) - F(t-)).
double expected_max_seconds(const std::vector<HolderTime>& holders) {
    std::vector<double> points;
    for (const HolderTime& h : holders) points.insert(points.end(), h.seconds.begin(), h.seconds.end());
    std::sort(points.begin(), points.end());
    points.erase(std::unique(points.begin(), points.end()), points.end());
    // seconds[] is non-decreasing in n, so each holder's CDF advances with a cursor as t grows.
    std::vector<size_t> next(holders.size(), 0);
    std::vector<double> holder_cdf(holders.size(), 0.0);
    double expected = 0, below = 0;
    for (double t : points) {
        double cdf = 1.0;
        for (size_t i = 0; i < holders.size(); ++i) {
            const HolderTime& h = holders[i];
            while (next[i] < h.seconds.size() && h.seconds[next[i]] <= t) holder_cdf[i] += h.prob[next[i]++];
            cdf *= holder_cdf[i];
        }
        expected += t * (cdf - below);
        below = cdf;
    }
    return expected;
}

std::vector<std::vector<double>> expert_probs_from_trace(const RoutingTrace& trace, const PlanProblem& problem,
                                                         bool smooth) {
    MOERIG_CHECK(trace.num_layers == problem.num_layers(), ConfigError,
                 "routing trace '{}' has {} layers but model {} has {}", trace.model, trace.num_layers,
                 problem.model_name, problem.num_layers());
    std::vector<std::vector<double>> probs(problem.num_layers());
    for (uint32_t l = 0; l < problem.num_layers(); ++l) {
        const LayerCost& layer = problem.layers[l];
        if (layer.num_experts == 0) continue;
        MOERIG_CHECK(trace.num_experts == layer.num_experts, ConfigError,
                     "routing trace '{}' has {} experts per layer but model {} has {}", trace.model, trace.num_experts,
                     problem.model_name, layer.num_experts);
        const double k = problem.top_k;
        probs[l].assign(layer.num_experts, k / layer.num_experts);
        if (!trace.has_layer(l)) continue;  // no data for this layer: uniform
        double sum = 0;
        for (uint64_t c : trace.counts[l]) sum += static_cast<double>(c);
        if (sum <= 0) continue;
        const double prior = smooth ? coeff::kTracePriorCount : 0.0;
        const double norm = k / (sum + prior * layer.num_experts);
        for (uint32_t e = 0; e < layer.num_experts; ++e) {
            probs[l][e] = std::min(1.0, (static_cast<double>(trace.counts[l][e]) + prior) * norm);
        }
    }
    return probs;
}

PlanProblem make_problem(const ModelAccount& model, const RigSpec& rig, const Workload& workload,
                         const PlanOptions& options, const RoutingTrace* trace) {
    workload.validate();
    const ModelSpec& spec = model.spec;
    MOERIG_CHECK(!rig.cards.empty(), ConfigError, "rig '{}' has no cards", rig.name);
    MOERIG_CHECK(model.layers.size() == spec.num_layers && spec.num_layers > 0, ConfigError,
                 "model '{}': account has {} layers, spec {}", spec.name, model.layers.size(), spec.num_layers);
    PlanProblem p;
    p.model_name = spec.name;
    p.hidden = static_cast<uint32_t>(spec.hidden);
    p.top_k = spec.num_experts_used;
    p.workload = workload;
    p.options = options;
    p.max_context =
        static_cast<uint32_t>(std::min<uint64_t>(spec.max_context ? spec.max_context : UINT32_MAX, UINT32_MAX));
    const double params_per_byte =
        model.total_bytes ? static_cast<double>(model.total_params) / static_cast<double>(model.total_bytes) : 0.5;
    uint64_t kv_per_token = 0;
    for (const LayerAccount& la : model.layers) {
        LayerCost layer;
        layer.stage_bytes = la.stage_bytes();
        layer.stage_params = params_per_byte * static_cast<double>(la.stage_bytes());
        layer.num_experts = la.num_experts;
        layer.kv_bytes_per_token = model.kv_bytes_per_token(la.layer_idx, options.kv_cache_dtype);
        layer.kv_window = la.sliding ? spec.sliding_window : 0;
        kv_per_token += layer.kv_bytes_per_token;
        if (la.num_experts > 0) {
            p.expert_bytes = std::max(p.expert_bytes, la.expert_bytes);
            p.expert_params = std::max(p.expert_params, static_cast<double>(la.expert_params));
            layer.expert_prob.assign(la.num_experts, static_cast<double>(p.top_k) / la.num_experts);
        }
        p.layers.push_back(std::move(layer));
    }
    p.output_bytes = model.output_bytes;
    p.logits_bytes = uint64_t{std::max<uint32_t>(workload.batch, 1)} * model.spec.vocab * coeff::kLogitsBytesPerValue;
    p.output_params = params_per_byte * static_cast<double>(model.output_bytes);
    p.embedding_bytes = model.embedding_bytes;
    p.model_spec = model_proto(model, p.expert_bytes, kv_per_token);

    p.rig_spec.set_name(rig.name);
    for (const auto& host : rig.hosts) {
        HostCost h;
        h.name = host.name;
        h.mem_bw = (host.mem_bw_bytes_per_s > 0 ? host.mem_bw_bytes_per_s : coeff::kDefaultHostBandwidth) *
                   coeff::kHostBandwidthEfficiency;
        h.flops = coeff::kHostFlops;
        const auto usable = static_cast<uint64_t>(coeff::kHostRamUsableFraction * static_cast<double>(host.ram_bytes));
        const uint64_t embedding = p.hosts.empty() ? p.embedding_bytes : 0;  // token_embd lives on host 0
        h.spill_budget_bytes = usable > embedding ? usable - embedding : 0;
        proto::HostSpec* hp = p.rig_spec.add_hosts();
        hp->set_name(host.name);
        hp->set_ram_bytes(host.ram_bytes);
        hp->set_ram_bandwidth(host.mem_bw_bytes_per_s);
        p.hosts.push_back(std::move(h));
    }
    if (p.hosts.empty()) {
        p.hosts.push_back(
            HostCost{"host0", 0, coeff::kDefaultHostBandwidth * coeff::kHostBandwidthEfficiency, coeff::kHostFlops});
        p.rig_spec.add_hosts()->set_name("host0");
    }
    p.net_bw = rig.network ? rig.network->bytes_per_s : coeff::kDefaultNetworkBytesPerS;
    p.net_latency_s = rig.network && rig.network->latency_s > 0 ? rig.network->latency_s : coeff::kNetworkLatencyS;
    for (int i = 0; i < p.rig_spec.hosts_size(); ++i) {
        p.rig_spec.mutable_hosts(i)->set_network_bandwidth(p.net_bw);
        p.rig_spec.mutable_hosts(i)->set_network_latency_s(p.net_latency_s);
    }
    for (const RigCard& rc : rig.cards) {
        CardCost c;
        c.name = fmt::format("gpu{}", rc.card_idx);
        c.kind = rc.spec.name;
        c.host_idx = std::min<uint32_t>(rc.host_idx, static_cast<uint32_t>(p.hosts.size() - 1));
        c.vram_bytes = rc.spec.vram_bytes;
        c.reserve_bytes = rc.spec.reserve_bytes > 0 ? rc.spec.reserve_bytes : coeff::kDefaultReserveBytes;
        c.budget_bytes = c.vram_bytes > c.reserve_bytes ? c.vram_bytes - c.reserve_bytes : 0;
        MOERIG_CHECK(rc.spec.mem_bw_bytes_per_s > 0, ConfigError, "rig '{}': card {} ({}) has no memory bandwidth",
                     rig.name, rc.card_idx, rc.spec.name);
        c.mem_bw = rc.spec.mem_bw_bytes_per_s * coeff::kMemBandwidthEfficiency;
        const double peak_flops = std::max(rc.spec.fp32_flops, rc.spec.fp16_flops);
        c.flops = (peak_flops > 0 ? peak_flops : 1e12) * coeff::kComputeEfficiency;
        c.link_bw = link_bytes_per_s(rc.link) * coeff::kPcieEfficiency;
        MOERIG_CHECK(c.link_bw > 0, ConfigError, "rig '{}': card {} has an unknown PCIe link (gen {} x{})", rig.name,
                     rc.card_idx, rc.link.pcie_gen, rc.link.lanes);
        c.peer_bw = rc.link.p2p ? c.link_bw : c.link_bw / coeff::kNoP2pCrossings;
        c.peer_latency_s = rc.link.p2p ? coeff::kP2pLatencyS : coeff::kStagedLatencyS;
        c.spec.set_name(c.name);
        c.spec.set_kind(c.kind);
        c.spec.set_host_idx(c.host_idx);
        c.spec.set_vram_bytes(c.vram_bytes);
        c.spec.set_reserve_bytes(c.reserve_bytes);
        c.spec.set_mem_bandwidth(rc.spec.mem_bw_bytes_per_s);
        c.spec.set_flops(peak_flops);
        c.spec.mutable_link()->set_pcie_gen(rc.link.pcie_gen);
        c.spec.mutable_link()->set_pcie_lanes(rc.link.lanes);
        c.spec.mutable_link()->set_p2p(rc.link.p2p);
        *p.rig_spec.add_cards() = c.spec;
        p.cards.push_back(std::move(c));
    }
    if (trace) {
        auto probs = expert_probs_from_trace(*trace, p, /*smooth=*/true);
        for (uint32_t l = 0; l < p.num_layers(); ++l) {
            if (!probs[l].empty()) p.layers[l].expert_prob = std::move(probs[l]);
        }
    }
    return p;
}

DecodeStep decode_step(const PlanProblem& problem, const Layout& layout, uint32_t batch, uint32_t context,
                       uint32_t max_microbatches) {
    DecodeStep best;
    best.seconds = kNever;
    PassTotals totals;
    uint32_t last_size = 0;
    for (uint32_t m = 1; m <= std::min(batch, max_microbatches); ++m) {
        const uint32_t size = (batch + m - 1) / m;  // sequences per micro-batch
        if (size == last_size) continue;
        last_size = size;
        const uint32_t count = (batch + size - 1) / size;
        const double first = pass_seconds(problem, layout, size, size, context, size, totals);
        const double slowest = *std::max_element(totals.group_s.begin(), totals.group_s.end());
        // Pipeline fill: the first micro-batch crosses every group, each further one adds the slowest group.
        const double seconds = first + (count - 1) * slowest;
        if (seconds < best.seconds * (1 - 1e-12)) best = DecodeStep{seconds, count};
    }
    return best;
}

double decode_step_seconds(const PlanProblem& problem, const Layout& layout, uint32_t batch, uint32_t context,
                           uint32_t max_microbatches) {
    return decode_step(problem, layout, batch, context, max_microbatches).seconds;
}

double prefill_seconds(const PlanProblem& problem, const Layout& layout, uint64_t tokens) {
    const uint64_t ubatch = std::min<uint64_t>(tokens, coeff::kPrefillUbatchTokens);
    const uint64_t num_ubatches = (tokens + ubatch - 1) / ubatch;
    PassTotals totals;
    // Attention reads of a prompt's own KV are part of the compute roofline: context 0 here.
    const double first = pass_seconds(problem, layout, static_cast<double>(ubatch), 1, 0, 1, totals);
    const double slowest = *std::max_element(totals.group_s.begin(), totals.group_s.end());
    // Ubatches flow through the pipeline groups: the slowest group sets the pace after the first.
    return first + static_cast<double>(num_ubatches - 1) * slowest;
}

uint32_t max_context(const PlanProblem& problem, const Layout& layout, uint32_t batch) {
    std::vector<double> full_kv(problem.num_cards(), 0.0), window_kv(problem.num_cards(), 0.0);
    for (uint32_t l = 0; l < problem.num_layers(); ++l) {
        const LayerCost& layer = problem.layers[l];
        const uint32_t s = layout.stage_card[l];
        if (layer.kv_window) {
            window_kv[s] += static_cast<double>(layer.kv_window) * layer.kv_bytes_per_token;
        } else {
            full_kv[s] += static_cast<double>(layer.kv_bytes_per_token);
        }
    }
    double best = problem.max_context;
    for (uint32_t c = 0; c < problem.num_cards(); ++c) {
        if (full_kv[c] <= 0) continue;
        const CardMemory& m = layout.memory[c];
        const double fixed = static_cast<double>(m.total() - m.kv - m.replica_experts);
        const double free_per_seq = (static_cast<double>(problem.cards[c].vram_bytes) - fixed) / batch - window_kv[c];
        best = std::min(best, std::max(0.0, std::floor(free_per_seq / full_kv[c])));
    }
    return static_cast<uint32_t>(best);
}

Prediction predict(const PlanProblem& problem, const Layout& layout) {
    MOERIG_ASSERT(layout.feasible);
    const Workload& w = problem.workload;
    Prediction pred;
    const auto mid_context = static_cast<uint32_t>(w.prompt + w.gen / 2);
    pred.decode_step_s = decode_step_seconds(problem, layout, 1, mid_context);
    pred.card_read_bytes.assign(problem.num_cards(), 0.0);
    pred.card_link_bytes.assign(problem.num_cards(), 0.0);
    const DecodeStep step = decode_step(problem, layout, w.batch, mid_context);
    pred.decode_step_s_batch = step.seconds;
    pred.decode_microbatches = step.num_microbatches;
    // Bytes per step: one pass of a micro-batch, times the micro-batches.
    PassTotals totals;
    totals.card_read = &pred.card_read_bytes;
    totals.card_link = &pred.card_link_bytes;
    const uint32_t size = (w.batch + step.num_microbatches - 1) / step.num_microbatches;
    pass_seconds(problem, layout, size, size, mid_context, size, totals);
    for (double& b : pred.card_read_bytes) b *= step.num_microbatches;
    for (double& b : pred.card_link_bytes) b *= step.num_microbatches;
    pred.prefill_s = prefill_seconds(problem, layout, w.prompt);
    pred.decode_tokens_per_s = 1.0 / pred.decode_step_s;
    pred.decode_tokens_per_s_batch = w.batch / pred.decode_step_s_batch;
    pred.prefill_tokens_per_s = w.prompt / pred.prefill_s;
    pred.ttft_s = pred.prefill_s;  // the last prefill ubatch yields the first token's logits
    pred.max_context = max_context(problem, layout, w.batch);
    pred.workload_s = prefill_seconds(problem, layout, uint64_t{w.batch} * w.prompt) +
                      static_cast<double>(w.gen) * pred.decode_step_s_batch;
    return pred;
}

double expert_balance(const PlanProblem& problem, const Layout& layout,
                      const std::vector<std::vector<double>>& expert_prob) {
    std::vector<double> card_s(problem.num_cards(), 0.0);
    double sum_mean = 0, sum_max = 0;
    for (uint32_t l = 0; l < problem.num_layers(); ++l) {
        if (problem.layers[l].num_experts == 0 || expert_prob[l].empty()) continue;
        const auto& group = layout.groups[layout.layer_group[l]];
        for (uint32_t c : group) card_s[c] = 0.0;
        for (uint32_t e = 0; e < problem.layers[l].num_experts; ++e) {
            for (const ExpertCopy& copy : layout.experts[l][e]) {
                if (copy.card_idx == kOnHost) continue;
                card_s[copy.card_idx] += expert_prob[l][e] * copy.share / problem.cards[copy.card_idx].mem_bw;
            }
        }
        double mean = 0, max = 0;
        for (uint32_t c : group) {
            mean += card_s[c];
            max = std::max(max, card_s[c]);
        }
        sum_mean += mean / static_cast<double>(group.size());
        sum_max += max;
    }
    return sum_max > 0 ? sum_mean / sum_max : 1.0;
}

}  // namespace moerig::sharding
