// Measured vs predicted on virtual cards. Calibrates "this CPU as a card" once (achieved GEMV bandwidth
// streaming the model's own expert matrices, cold in cache, with the card's threads), writes a rig of such
// cards on PCIe gen1 x1 risers without P2P, plans the model on it and runs each plan with emulated links
// that sleep (wall time includes link time); then compares measured decode tokens/s with the plan's
// prediction (target: within 15%). A one-card rig of the same card checks the calibration alone.
// Virtual cards share the host's cores and DRAM, real cards do not: the card is calibrated twice, alone
// (what a pipeline stage gets: one card works at a time) and with every card streaming at once (what
// expert-parallel cards get while their experts run together), and both predictions are printed.
// With one thread per card each plan also runs on the compute clock (ShardedOptions::compute_clock): every card's
// measured CPU time and the modelled links on per-card virtual clocks, the rig as if each card had a core of its
// own (clock_tok/s, compared with the alone-calibrated prediction), which this host cannot show in wall time
// when it has fewer cores than cards.
// Every run decodes the one-card greedy tokens (teacher forcing, so all route alike); each plan is validated once
// (logits within NMSE kMaxNmse of one card's at every step) before timing. The compute clock runs its cards one at a
// time (exclusive compute clock), so each card streams its weights with the host's DRAM to itself.
// Usage: bench_calibrated model.gguf [threads_per_card=1] [num_cards=4] [out_dir=.] [decode_tokens=32]
#include <fmt/format.h>
#include <fmt/os.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "formats/gguf.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/threadpool.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/sharded_executor.h"
#include "runtime/sharded_run.h"
#include "sharding/cost_coefficients.h"

using namespace moerig::runtime;
using moerig::bench::nmse;
namespace coeff = moerig::sharding::coeff;

namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kContext = 256;
const std::vector<int32_t> kPrompt = {1, 17, 230, 45, 9, 301, 77, 12};

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// Bytes per second per card that num_cards cards (each its own thread pool of `threads`) achieve in
/// decode-shaped GEMVs (one token), all streaming at once: card c reads every expert matrix of the layers
/// l with l % num_cards == c, in order, so nothing is in cache when it is read. The first pass pages the
/// mapping in; the best of the timed passes counts.
double calibrate_gemv_bytes_per_s(const Model& model, int threads, int num_cards) {
    std::vector<std::vector<moerig::kernels::WeightView>> views(num_cards);
    std::vector<size_t> num_bytes(num_cards, 0);
    const auto& layers = model.weights().layers;
    for (size_t l = 0; l < layers.size(); ++l) {
        const int card = static_cast<int>(l % num_cards);
        for (const ExpertTensor* t : {&layers[l].gate_exps, &layers[l].up_exps, &layers[l].down_exps}) {
            for (int64_t e = 0; e < t->num_experts; ++e) {
                views[card].push_back(t->expert(e));
                num_bytes[card] += views[card].back().row_stride_bytes * static_cast<size_t>(views[card].back().rows);
            }
        }
    }
    for (int c = 0; c < num_cards; ++c)
        MOERIG_CHECK(!views[c].empty(), moerig::ConfigError, "{}: no expert matrices to calibrate card {} of {} on",
                     model.gguf().path(), c, num_cards);
    std::vector<double> best(num_cards, 0);
    {
        std::vector<std::jthread> cards;
        for (int c = 0; c < num_cards; ++c) {
            cards.emplace_back([&, c] {
                moerig::kernels::ThreadPool pool(threads);
                const int64_t max_dim = model.hparams().n_embd * 8;
                std::vector<float> x(static_cast<size_t>(max_dim), 0.5f), y(static_cast<size_t>(max_dim));
                for (int pass = 0; pass < 4; ++pass) {
                    const auto t0 = Clock::now();
                    for (const auto& w : views[c]) moerig::kernels::matmul(w, x.data(), 1, y.data(), pool);
                    if (pass > 0) best[c] = std::max(best[c], double(num_bytes[c]) / seconds_since(t0));
                }
            });
        }
    }
    return *std::min_element(best.begin(), best.end());
}

/// A rig of num_cards CPU virtual cards with the calibrated bandwidth, written as rig YAML (a catalog
/// card stands in; every rate the decode cost model reads is overridden).
std::string write_rig(const std::string& dir, const std::string& tag, int num_cards, double card_mem_bw,
                      uint64_t vram_bytes) {
    const std::string name = fmt::format("cpu-{}x-calibrated{}-gen1x1", num_cards, tag);
    const std::string path = (std::filesystem::path(dir) / (name + ".yaml")).string();
    auto out = fmt::output_file(path);
    out.print("# Written by bench_calibrated: this CPU as {} virtual card(s), calibrated GEMV bandwidth\n", num_cards);
    out.print("# (achieved / kMemBandwidthEfficiency, so the cost model's achieved rate is the measured one).\n");
    out.print("name: {}\ndescription: CPU virtual cards, calibrated, gen1 x1 risers, no P2P\n", name);
    out.print("host:\n  name: this-cpu\n  ram: 16 GiB\n  mem_bw: {:.0f}\n", card_mem_bw);
    out.print("cards:\n  - card: P106-100\n    count: {}\n    pcie_gen: 1\n    lanes: 1\n    p2p: false\n", num_cards);
    out.print("    vram: {}\n    reserve: 64 MiB\n    mem_bw: {:.0f}\n", vram_bytes, card_mem_bw);
    return path;
}

/// The strategy choice that forces a plan's strategy ("expert_parallel" -> "expert-parallel").
const char* chosen_choice(const std::string& strategy) {
    if (strategy == "expert_parallel") return "expert-parallel";
    if (strategy == "hybrid") return "hybrid";
    return "pipeline";
}

/// The prompt, then num_tokens steps of one token: greedy when forced is empty (the tokens chosen are returned),
/// else forced[i] at step i (teacher forcing: every run then routes the same tokens to the same experts). Returns
/// the tokens and the decode seconds; logits (optional) gets every step's logits, the prompt's first.
/// after_prompt (optional) runs once the prompt is in.
template <class Eval>
std::pair<std::vector<int32_t>, double> decode(Eval&& eval, int num_tokens, std::span<const int32_t> forced = {},
                                               const std::function<void()>& after_prompt = {},
                                               std::vector<std::vector<float>>* logits_out = nullptr) {
    std::vector<int32_t> out;
    std::vector<float> logits = eval(std::span<const int32_t>(kPrompt));
    if (after_prompt) after_prompt();
    const auto t0 = Clock::now();
    for (int i = 0; i < num_tokens; ++i) {
        if (logits_out) logits_out->push_back(logits);
        const auto next = forced.empty()
                              ? static_cast<int32_t>(moerig::kernels::argmax(logits.data(), int64_t(logits.size())))
                              : forced[static_cast<size_t>(i)];
        out.push_back(next);
        logits = eval(std::span<const int32_t>(&next, 1));
    }
    const double s = seconds_since(t0);
    if (logits_out) logits_out->push_back(std::move(logits));
    return {out, s};
}

/// Sharded logits are not bit-identical to one card's: a card returns one partial sum per row of the experts it ran,
/// so the combine adds the k expert outputs in another order, and the next layer's int8 activation quantisation
/// turns those last-bit differences into a few rounding flips. On this 8-layer Q8_0 model that is NMSE ~4e-5 per
/// step, at most ~1e-3 over 32 steps; a wrong expert, weight or row would be NMSE > 0.1.
constexpr double kMaxNmse = 1e-2;

/// Decode tokens/s of one run on the compute clock (a model with ShardedOptions::compute_clock, links modelled and
/// not slept), the reference tokens forced.
double clock_tokens_per_s(ShardedModel& sharded, std::span<const int32_t> forced) {
    const int num_tokens = static_cast<int>(forced.size());
    sharded.reset();
    double before = 0;
    decode([&](std::span<const int32_t> t) { return sharded.eval(t); }, num_tokens, forced,
           [&] { before = sharded.modelled_s(); });
    return num_tokens / (sharded.modelled_s() - before);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        fmt::print(stderr,
                   "usage: bench_calibrated model.gguf [threads_per_card=1] [num_cards=4] [out_dir=.] "
                   "[decode_tokens=32]\n");
        return 2;
    }
    const std::string path = argv[1];
    const int threads = argc > 2 ? std::atoi(argv[2]) : 1;
    const int num_cards = argc > 3 ? std::atoi(argv[3]) : 4;
    const std::string out_dir = argc > 4 ? argv[4] : ".";
    const int num_tokens = argc > 5 ? std::atoi(argv[5]) : 32;
    try {
        auto model = Model::load(path, ModelOptions{.num_threads = threads, .context = kContext, .progress = false});
        const ModelHParams& hp = model->hparams();
        const uint64_t model_bytes = std::filesystem::file_size(path);
        fmt::print("model {} ({:.0f} MB): {} layers, hidden {}, {} experts (top {}); {} thread(s) per card\n", path,
                   model_bytes / 1e6, hp.n_layer, hp.n_embd, hp.n_expert, hp.n_expert_used, threads);

        const double achieved = calibrate_gemv_bytes_per_s(*model, threads, 1);
        const double achieved_shared = calibrate_gemv_bytes_per_s(*model, threads, num_cards);
        const double card_mem_bw = achieved / coeff::kMemBandwidthEfficiency;
        const double shared_mem_bw = achieved_shared / coeff::kMemBandwidthEfficiency;
        fmt::print(
            "calibration: GEMV over the expert matrices, per card: alone {:.2f} GB/s, {} cards at once {:.2f} "
            "GB/s\n  -> card mem_bw (achieved / {:.2f}) {:.2f} / {:.2f} GB/s\n",
            achieved / 1e9, num_cards, achieved_shared / 1e9, coeff::kMemBandwidthEfficiency, card_mem_bw / 1e9,
            shared_mem_bw / 1e9);

        // One card: the calibration alone (no links, no sharding).
        // Its greedy tokens are forced on every other run, whose logits must match its own (NMSE, the acceptance
        // bound of the sharded runs): a random-weight model has near ties that summation order may flip.
        Session session(*model, kContext);
        std::vector<std::vector<float>> ref_logits;
        auto [ref_tokens, ref_s] =
            decode([&](std::span<const int32_t> t) { return session.eval(t); }, num_tokens, {}, {}, &ref_logits);
        session.reset();
        ref_s = std::min(
            ref_s, decode([&](std::span<const int32_t> t) { return session.eval(t); }, num_tokens, ref_tokens).second);

        // Cards of 1.5x an even share: the model must spread over (nearly) all of them.
        const uint64_t share = model_bytes / num_cards;
        const uint64_t card_vram = share + share / 2 + (128ull << 20);
        const std::string rig1 = write_rig(out_dir, "", 1, card_mem_bw, model_bytes + (256ull << 20));
        const std::string rig = write_rig(out_dir, "", num_cards, card_mem_bw, card_vram);
        const std::string rig_shared = write_rig(out_dir, "-shared", num_cards, shared_mem_bw, card_vram);
        fmt::print("rigs: {}\n      {}\n      {}\n\n", rig1, rig, rig_shared);
        const bool clock = threads == 1;

        // Every plan: validated and timed in wall time (links slept) first.
        struct Row {
            std::string choice, chosen;
            ShardLayout layout;
            double predicted = 0, predicted_shared = 0, predicted_fit = 0;
            double measured = 0, on_clock = 0, link_per_token = 0, worst_nmse = 0;
            std::unique_ptr<ShardedModel> clocked;  // the plan on the compute clock
        };
        std::vector<Row> rows;
        {
            Row one;
            one.choice = "session";
            one.layout = plan_layout(*model, rig1, kContext, int64_t(kPrompt.size()), num_tokens, "auto", &one.chosen,
                                     &one.predicted);
            one.measured = num_tokens / ref_s;
            rows.push_back(std::move(one));
        }
        for (const char* choice : {"auto", "pipeline", "expert-parallel", "hybrid"}) {
            Row row;
            row.choice = choice;
            try {
                row.layout = plan_layout(*model, rig, kContext, int64_t(kPrompt.size()), num_tokens, choice,
                                         &row.chosen, &row.predicted);
                // The same plan's prediction with the shared-DRAM card (the strategy is forced to the one run).
                plan_layout(*model, rig_shared, kContext, int64_t(kPrompt.size()), num_tokens,
                            chosen_choice(row.chosen), nullptr, &row.predicted_shared);
            } catch (const std::exception& e) {
                fmt::print("{:>6} {:>16} not planned: {}\n", num_cards, choice, e.what());
                continue;
            }
            ShardedModel sharded(
                *model, row.layout,
                ShardedOptions{
                    .context = kContext, .threads_per_card = threads, .emulate_links = true, .sleep_links = true});
            std::vector<std::vector<float>> logits;
            auto [tokens, s] = decode([&](std::span<const int32_t> t) { return sharded.eval(t); }, num_tokens,
                                      ref_tokens, {}, &logits);
            for (size_t i = 0; i < logits.size(); ++i)
                row.worst_nmse = std::max(row.worst_nmse, nmse(logits[i], ref_logits[i]));
            if (row.worst_nmse > kMaxNmse) {
                fmt::print(stderr, "validation failed: plan '{}': logits NMSE {:.3g} vs one card (bound {:g})\n",
                           choice, row.worst_nmse, kMaxNmse);
                return 1;
            }
            sharded.reset();
            const double link_before = sharded.modelled_s();
            const auto [_, s2] =
                decode([&](std::span<const int32_t> t) { return sharded.eval(t); }, num_tokens, ref_tokens);
            row.link_per_token = (sharded.modelled_s() - link_before) / (num_tokens + 1);
            row.measured = num_tokens / std::min(s, s2);
            rows.push_back(std::move(row));
        }

        // The compute clock: kClockRounds rounds over every plan (one card included), the best run of each, so a
        // burst of load on a shared host spoils one round of one plan rather than a plan's every run.
        constexpr int kClockRounds = 4;
        if (clock) {
            for (Row& row : rows) {
                row.clocked = std::make_unique<ShardedModel>(*model, row.layout,
                                                             ShardedOptions{.context = kContext,
                                                                            .threads_per_card = 1,
                                                                            .emulate_links = true,
                                                                            .sleep_links = false,
                                                                            .compute_clock = true});
            }
            for (int round = 0; round < kClockRounds; ++round)
                for (Row& row : rows)
                    row.on_clock = std::max(row.on_clock, clock_tokens_per_s(*row.clocked, ref_tokens));
        }

        // The fitted card (compute clock only): the rate at which the planner's one-card prediction equals the
        // one-card decode on the compute clock. The GEMV calibration above times the expert matrices alone and at
        // their best; the fit also covers what else a decode step costs on this CPU, so clock/fit isolates what
        // the multi-card rows test: the planner's model of sharding (links, dispatch, each layer waiting for the
        // slowest holder of its experts).
        if (clock) {
            double fit_mem_bw = card_mem_bw, predicted1_fit = rows[0].predicted;
            for (int it = 0; it < 4; ++it) {
                fit_mem_bw *= rows[0].on_clock / predicted1_fit;
                const std::string rig1_fit = write_rig(out_dir, "-fit", 1, fit_mem_bw, model_bytes + (256ull << 20));
                plan_layout(*model, rig1_fit, kContext, int64_t(kPrompt.size()), num_tokens, "auto", nullptr,
                            &predicted1_fit);
            }
            rows[0].predicted_fit = predicted1_fit;
            const std::string rig_fit = write_rig(out_dir, "-fit", num_cards, fit_mem_bw, card_vram);
            for (size_t i = 1; i < rows.size(); ++i) {
                plan_layout(*model, rig_fit, kContext, int64_t(kPrompt.size()), num_tokens,
                            chosen_choice(rows[i].chosen), nullptr, &rows[i].predicted_fit);
            }
            fmt::print("fitted card: mem_bw {:.2f} GB/s ({:.2f}x the GEMV calibration): {}\n\n", fit_mem_bw / 1e9,
                       fit_mem_bw / card_mem_bw, rig_fit);
        }

        fmt::print("{:>6} {:>16} {:>16} {:>11} {:>11} {:>9} {:>11} {:>11} {:>10} {:>10} {:>9}\n", "cards", "strategy",
                   "chosen", "plan_tok/s", "meas_tok/s", "meas/plan", "meas/shared", "clock_tok/s", "clock/plan",
                   "fit_tok/s", "clock/fit");
        for (size_t i = 0; i < rows.size(); ++i) {
            const Row& r = rows[i];
            const std::string shared = i == 0 ? "-" : fmt::format("{:.2f}", r.measured / r.predicted_shared);
            fmt::print("{:>6} {:>16} {:>16} {:>11.2f} {:>11.2f} {:>9.2f} {:>11} {:>11.2f} {:>10.2f} {:>10.2f} {:>9.2f}",
                       r.layout.num_cards(), r.choice, r.chosen, r.predicted, r.measured, r.measured / r.predicted,
                       shared, r.on_clock, r.on_clock / r.predicted, r.predicted_fit,
                       clock ? r.on_clock / r.predicted_fit : 0.0);
            if (i > 0) fmt::print("   link {:.3f} ms/token, nmse {:.1e}", r.link_per_token * 1e3, r.worst_nmse);
            fmt::print("\n");
        }
    } catch (const std::exception& e) {
        fmt::print(stderr, "bench_calibrated: {}\n", e.what());
        return 1;
    }
    return 0;
}
