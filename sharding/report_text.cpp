// Text report of a plan: a fixed-width table per card and the cost model's predictions, or the
// does-not-fit explanation with per-card overage and suggestions.
#include "sharding/report_text.h"

#include <fmt/format.h>

#include <algorithm>

#include "sharding/workload.h"

namespace moerig::sharding {
namespace {

std::string gb(double bytes) {
    return fmt::format("{:.1f}", bytes / 1e9);
}

std::string bar(double fraction, int width) {
    const int filled = std::clamp(static_cast<int>(fraction * width + 0.5), 0, width);
    std::string out(static_cast<size_t>(width) + 2, '.');
    out.front() = '[';
    out.back() = ']';
    std::fill_n(out.begin() + 1, filled, '#');
    return out;
}

std::string header(const proto::Plan& plan) {
    const auto& m = plan.model();
    const auto& w = plan.workload();
    return fmt::format(
        "moerig plan: {} {} ({:.0f}B params, {:.1f}B active, {} GB) on {} ({} cards, {} GB VRAM)\n"
        "workload: batch {}, context {}, prompt {}, gen {}\n",
        m.name(), m.quant(), m.total_params() / 1e9, m.active_params() / 1e9, gb(m.total_bytes()), plan.rig().name(),
        plan.cards_size(), gb([&] {
            double v = 0;
            for (const auto& c : plan.cards()) v += c.vram_bytes();
            return v;
        }()),
        w.batch(), w.context(), w.prompt(), w.gen());
}

}  // namespace

std::string format_layer_ranges(uint32_t begin, uint32_t end) {
    if (begin >= end) return "-";
    if (end - begin == 1) return fmt::format("{}", begin);
    return fmt::format("{}-{}", begin, end - 1);
}

std::string format_plan_text(const proto::Plan& plan) {
    std::string out = header(plan);
    out += fmt::format("strategy: {}", strategy_name(plan.strategy()));
    if (plan.strategy() == proto::HYBRID) out += fmt::format(" (groups of {} cards)", plan.group_size());
    out += "\n\n";
    out += fmt::format("{:<6} {:<14} {:<34} {:>7} {:>8} {:>9} {:>8}\n", "card", "kind", "VRAM used / total GB",
                       "layers", "experts", "replicas", "KV tok");
    for (const auto& card : plan.cards()) {
        const double used = static_cast<double>(card.memory().total());
        const double total = static_cast<double>(card.vram_bytes());
        uint32_t replicas = 0;
        for (const auto& slot : card.experts()) replicas += slot.replica() > 0 ? 1 : 0;
        const std::string vram =
            fmt::format("{} {:>5}/{:<5}", bar(total > 0 ? used / total : 0, 20), gb(used), gb(total));
        out += fmt::format("{:<6} {:<14} {:<34} {:>7} {:>8} {:>9} {:>8}{}\n", card.name(), card.kind(), vram,
                           format_layer_ranges(card.layer_begin(), card.layer_end()), card.experts_size(), replicas,
                           card.kv_tokens(), card.holds_output() ? "  +lm head" : "");
    }
    for (const auto& host : plan.hosts()) {
        if (host.spilled_bytes() == 0 && host.embedding_bytes() == 0) continue;
        out += fmt::format("host{}  embedding {} GB, {} spilled experts ({} GB) in RAM\n", host.host_idx(),
                           gb(host.embedding_bytes()), host.spilled_experts_size(), gb(host.spilled_bytes()));
    }
    const auto& p = plan.predicted();
    out += fmt::format(
        "\npredicted: decode {:.2f} tok/s at batch 1, {:.2f} tok/s at batch {} ({:.1f} ms/step, {} micro-batches)\n"
        "           prefill {:.1f} tok/s, time to first token {:.2f} s ({} prompt tokens)\n"
        "           max context {} tokens per sequence at batch {}; expert balance {:.3f}\n",
        p.decode_tokens_per_s(), p.decode_tokens_per_s_batch(), plan.workload().batch(), p.decode_step_s_batch() * 1e3,
        plan.decode_microbatches(), p.prefill_tokens_per_s(), p.ttft_s(), plan.workload().prompt(), p.max_context(),
        plan.workload().batch(), p.balance());
    for (const auto& note : plan.notes()) out += "note: " + note + "\n";
    return out;
}

std::string format_no_fit_text(const proto::Plan& plan, const FitAdvice& advice) {
    std::string out = header(plan);
    out += "does not fit: " + advice.reason + "\n\n";
    out += "per card, with layers split in proportion to memory:\n";
    out += fmt::format("{:<6} {:<14} {:>9} {:>9} {:>9}\n", "card", "kind", "need GB", "VRAM GB", "over GB");
    for (const auto& c : advice.cards) {
        out += fmt::format("{:<6} {:<14} {:>9} {:>9} {:>9}\n", c.name, c.kind, gb(c.need_bytes), gb(c.vram_bytes),
                           c.over_bytes > 0 ? gb(c.over_bytes) : "-");
    }
    out += "\nwhat would fit:\n";
    for (const auto& s : advice.suggestions) out += "  - " + s + "\n";
    return out;
}

}  // namespace moerig::sharding
