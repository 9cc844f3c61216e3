// HTML report: inline SVG drawn from the plan proto alone (so a plan read back from a file renders the
// same). Three pictures: memory per card by kind, experts per card per layer, link traffic per card.
#include "sharding/report_html.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>

#include "kernels/error.h"
#include "sharding/report_text.h"
#include "sharding/workload.h"

namespace moerig::sharding {
namespace {

std::string escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '&':
                out += "&amp;";
                break;
            case '"':
                out += "&quot;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

struct Kind {
    const char* name;
    const char* color;
};
constexpr Kind kKinds[] = {{"dense weights", "#4c72b0"}, {"experts", "#55a868"}, {"replicas", "#8fd19e"},
                           {"KV cache", "#c44e52"},      {"buffers", "#dd8452"}, {"reserve", "#8c8c8c"}};

std::string memory_svg(const proto::Plan& plan) {
    const int row_h = 22, label_w = 150, bar_w = 560, top = 30;
    const int height = top + row_h * plan.cards_size() + 40;
    double max_vram = 1;
    for (const auto& c : plan.cards()) max_vram = std::max<double>(max_vram, c.vram_bytes());
    std::string svg = fmt::format(R"(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}">)",
                                  label_w + bar_w + 120, height);
    int x_legend = label_w;
    for (const Kind& k : kKinds) {
        svg += fmt::format(R"(<rect x="{}" y="6" width="12" height="12" fill="{}"/><text x="{}" y="16">{}</text>)",
                           x_legend, k.color, x_legend + 16, k.name);
        x_legend += 16 + 8 * static_cast<int>(std::string(k.name).size()) + 14;
    }
    for (int i = 0; i < plan.cards_size(); ++i) {
        const auto& c = plan.cards(i);
        const auto& m = c.memory();
        uint64_t replica_bytes = 0, primary_bytes = 0;
        for (const auto& slot : c.experts()) (slot.replica() > 0 ? replica_bytes : primary_bytes) += 1;
        const double per_slot = c.experts_size() ? static_cast<double>(m.expert_weights()) / c.experts_size() : 0;
        const double parts[] = {static_cast<double>(m.dense_weights()),
                                primary_bytes * per_slot,
                                replica_bytes * per_slot,
                                static_cast<double>(m.kv_cache()),
                                static_cast<double>(m.activations() + m.comm_buffers()),
                                static_cast<double>(m.reserve())};
        const int y = top + i * row_h;
        svg += fmt::format(R"(<text x="4" y="{}">{} {}</text>)", y + 15, escape(c.name()), escape(c.kind()));
        const double full = bar_w * c.vram_bytes() / max_vram;
        svg += fmt::format(R"(<rect x="{}" y="{}" width="{:.1f}" height="{}" fill="none" stroke="#333"/>)", label_w,
                           y + 2, full, row_h - 4);
        double x = label_w;
        for (size_t k = 0; k < std::size(parts); ++k) {
            const double w = bar_w * parts[k] / max_vram;
            if (w <= 0) continue;
            svg += fmt::format(
                R"(<rect x="{:.1f}" y="{}" width="{:.1f}" height="{}" fill="{}"><title>{}: {:.2f} GB</title></rect>)",
                x, y + 3, w, row_h - 6, kKinds[k].color, kKinds[k].name, parts[k] / 1e9);
            x += w;
        }
        svg += fmt::format(R"(<text x="{:.1f}" y="{}">{:.1f} / {:.1f} GB</text>)", label_w + full + 6, y + 15,
                           m.total() / 1e9, c.vram_bytes() / 1e9);
    }
    return svg + "</svg>";
}

std::string heatmap_svg(const proto::Plan& plan) {
    const uint32_t num_layers = plan.model().num_layers();
    const int num_cards = plan.cards_size();
    if (num_layers == 0 || num_cards == 0) return "";
    std::vector<std::vector<uint32_t>> count(num_cards, std::vector<uint32_t>(num_layers, 0));
    uint32_t max_count = 1;
    for (int c = 0; c < num_cards; ++c) {
        for (const auto& slot : plan.cards(c).experts()) {
            if (slot.layer() < num_layers) max_count = std::max(max_count, ++count[c][slot.layer()]);
        }
    }
    const int cell_w = std::max(4, std::min(14, 900 / static_cast<int>(num_layers)));
    const int cell_h = std::max(6, std::min(18, 600 / num_cards));
    const int left = 70, top = 20;
    std::string svg = fmt::format(R"(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}">)",
                                  left + cell_w * num_layers + 20, top + cell_h * num_cards + 30);
    for (int c = 0; c < num_cards; ++c) {
        const auto& card = plan.cards(c);
        svg += fmt::format(R"(<text x="2" y="{}" font-size="10">{}</text>)", top + c * cell_h + cell_h - 2,
                           escape(card.name()));
        for (uint32_t l = 0; l < num_layers; ++l) {
            const double v = static_cast<double>(count[c][l]) / max_count;
            const bool stage = l >= card.layer_begin() && l < card.layer_end();
            const int shade = static_cast<int>(255 - 200 * v);
            svg += fmt::format(
                R"svg(<rect x="{}" y="{}" width="{}" height="{}" fill="rgb({},{},255)"{}><title>{} layer {}: {} experts{}</title></rect>)svg",
                left + l * cell_w, top + c * cell_h, cell_w, cell_h, shade, shade,
                stage ? R"( stroke="#c44e52" stroke-width="1")" : "", escape(card.name()), l, count[c][l],
                stage ? " (stage)" : "");
        }
    }
    svg += fmt::format(R"(<text x="{}" y="{}" font-size="11">layer 0 .. {} (red outline: the card's stage)</text>)",
                       left, top + cell_h * num_cards + 18, num_layers - 1);
    return svg + "</svg>";
}

std::string traffic_svg(const proto::Plan& plan) {
    const int row_h = 18, label_w = 150, bar_w = 500, top = 6;
    double max_bytes = 1;
    for (const auto& c : plan.cards()) max_bytes = std::max(max_bytes, c.link_bytes());
    std::string svg = fmt::format(R"(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}">)",
                                  label_w + bar_w + 140, top + row_h * plan.cards_size() + 10);
    for (int i = 0; i < plan.cards_size(); ++i) {
        const auto& c = plan.cards(i);
        const int y = top + i * row_h;
        const double w = bar_w * c.link_bytes() / max_bytes;
        svg += fmt::format(R"(<text x="4" y="{}">{} gen{} x{}{}</text>)", y + 13, escape(c.name()),
                           plan.rig().cards_size() > i ? plan.rig().cards(i).link().pcie_gen() : 0,
                           plan.rig().cards_size() > i ? plan.rig().cards(i).link().pcie_lanes() : 0,
                           plan.rig().cards_size() > i && plan.rig().cards(i).link().p2p() ? " p2p" : "");
        svg += fmt::format(R"(<rect x="{}" y="{}" width="{:.1f}" height="{}" fill="#8172b3"/>)", label_w, y + 2, w,
                           row_h - 4);
        svg += fmt::format(R"(<text x="{:.1f}" y="{}">{:.2f} MB/step</text>)", label_w + w + 6, y + 13,
                           c.link_bytes() / 1e6);
    }
    return svg + "</svg>";
}

}  // namespace

std::string plan_report_html(const proto::Plan& plan) {
    std::string html = R"(<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>moerig plan</title>
<style>body{font-family:sans-serif;margin:24px;color:#222}svg text{font-family:monospace;font-size:12px}
pre{background:#f6f6f6;padding:12px;overflow-x:auto}h2{margin-top:28px}</style></head><body>
)";
    html += fmt::format("<h1>moerig plan: {} {} on {}</h1>\n", escape(plan.model().name()),
                        escape(plan.model().quant()), escape(plan.rig().name()));
    html += fmt::format("<p>strategy <b>{}</b>{}, fits: <b>{}</b></p>\n", strategy_name(plan.strategy()),
                        plan.strategy() == proto::HYBRID ? fmt::format(" (groups of {})", plan.group_size()) : "",
                        plan.fits() ? "yes" : "no");
    html += "<h2>Memory per card</h2>\n" + memory_svg(plan) + "\n";
    html += "<h2>Experts per card per layer</h2>\n" + heatmap_svg(plan) + "\n";
    html += "<h2>Link traffic per decode step</h2>\n" + traffic_svg(plan) + "\n";
    html += "<h2>Table</h2>\n<pre>" + escape(plan.fits() ? format_plan_text(plan) : std::string("does not fit")) +
            "</pre>\n</body></html>\n";
    return html;
}

void write_plan_html(const proto::Plan& plan, const std::string& path) {
    std::ofstream out(path, std::ios::binary);
    MOERIG_CHECK(out.good(), ConfigError, "--html {}: cannot open for writing", path);
    out << plan_report_html(plan);
    MOERIG_CHECK(out.good(), ConfigError, "--html {}: write failed", path);
}

}  // namespace moerig::sharding
