// Reads the YAML catalogs: configs/models/*.yaml (ModelSpec) and configs/cards.yaml (CardSpec).
#include "sharding/catalog.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "kernels/error.h"
#include "sharding/suggest.h"

#ifndef MOERIG_CONFIG_DIR
#define MOERIG_CONFIG_DIR "configs"
#endif

namespace moerig::sharding {
namespace {

namespace fs = std::filesystem;

// Lower-case, separators dropped: names compare this way everywhere ("RTX 3060 12GB" == "rtx3060-12gb").
std::string name_key(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c == '-' || c == '_' || c == ' ' || c == '.') continue;
        out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
    return out;
}

std::vector<fs::path> model_files() {
    std::vector<fs::path> out;
    const fs::path dir = config_dir() / "models";
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        if (e.path().extension() == ".yaml" || e.path().extension() == ".yml") out.push_back(e.path());
    }
    MOERIG_CHECK(!ec, ConfigError, "{}: cannot list model catalog ({}); set MOERIG_CONFIG_DIR", dir.string(),
                 ec.message());
    std::sort(out.begin(), out.end());
    return out;
}

QkNorm parse_qk_norm(const YamlNode& n) {
    const std::string s = n.as_string();
    if (s == "none") return QkNorm::kNone;
    if (s == "per_head") return QkNorm::kPerHead;
    if (s == "full") return QkNorm::kFull;
    MOERIG_THROW(ConfigError, "{}: expected none, per_head or full, got '{}'", n.where(), s);
}

void parse_attention(const YamlNode& a, ModelSpec& s) {
    a.check_keys({"kind", "heads", "kv_heads", "head_dim", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim",
                  "qk_rope_head_dim", "v_head_dim", "qkv_bias", "out_bias", "qk_norm", "sinks", "sliding_window",
                  "sliding_window_pattern", "ffn_norm_name"});
    const auto kind = a.at("kind");
    const std::string k = kind.as_string();
    if (k == "gqa") {
        s.attention = AttentionKind::kGqa;
    } else if (k == "mla") {
        s.attention = AttentionKind::kMla;
    } else {
        MOERIG_THROW(ConfigError, "{}: expected gqa or mla, got '{}'", kind.where(), k);
    }
    s.num_heads = static_cast<uint32_t>(a.u64("heads"));
    s.num_kv_heads = static_cast<uint32_t>(a.u64("kv_heads", s.num_heads));
    if (s.attention == AttentionKind::kMla) {
        s.q_lora_rank = static_cast<uint32_t>(a.u64("q_lora_rank"));
        s.kv_lora_rank = static_cast<uint32_t>(a.u64("kv_lora_rank"));
        s.qk_nope_head_dim = static_cast<uint32_t>(a.u64("qk_nope_head_dim"));
        s.qk_rope_head_dim = static_cast<uint32_t>(a.u64("qk_rope_head_dim"));
        s.v_head_dim = static_cast<uint32_t>(a.u64("v_head_dim"));
        s.head_dim = static_cast<uint32_t>(a.u64("head_dim", s.qk_nope_head_dim + s.qk_rope_head_dim));
    } else {
        s.head_dim = static_cast<uint32_t>(a.u64("head_dim"));
    }
    s.qkv_bias = a.boolean("qkv_bias", false);
    s.out_bias = a.boolean("out_bias", false);
    if (auto q = a.get("qk_norm")) s.qk_norm = parse_qk_norm(*q);
    s.attn_sinks = a.boolean("sinks", false);
    s.sliding_window = static_cast<uint32_t>(a.u64("sliding_window", 0));
    s.sliding_window_pattern = static_cast<uint32_t>(a.u64("sliding_window_pattern", 0));
    s.ffn_norm_name = a.str("ffn_norm_name", "ffn_norm");
}

void parse_ffn(const YamlNode& f, ModelSpec& s) {
    f.check_keys({"dense", "leading_dense_layers", "expert", "experts", "experts_used", "shared_experts", "shared_ffn",
                  "shared_gate", "expert_bias"});
    s.dense_ffn = f.u64("dense", 0);
    s.num_leading_dense = static_cast<uint32_t>(f.u64("leading_dense_layers", 0));
    s.expert_ffn = f.u64("expert", 0);
    s.num_experts = static_cast<uint32_t>(f.u64("experts", 0));
    s.num_experts_used = static_cast<uint32_t>(f.u64("experts_used", 0));
    s.num_shared_experts = static_cast<uint32_t>(f.u64("shared_experts", 0));
    s.shared_expert_ffn = f.u64("shared_ffn", 0);
    s.shared_expert_gate = f.boolean("shared_gate", false);
    s.expert_bias = f.boolean("expert_bias", false);
}

void parse_routing(const YamlNode& r, ModelSpec& s) {
    r.check_keys({"func", "groups", "groups_used", "scale", "norm_topk", "score_bias"});
    const std::string func = r.str("func", "softmax");
    if (func == "softmax") {
        s.routing = RoutingFunc::kSoftmax;
    } else if (func == "sigmoid") {
        s.routing = RoutingFunc::kSigmoid;
    } else {
        MOERIG_THROW(ConfigError, "{}: expected softmax or sigmoid, got '{}'", r.where("func"), func);
    }
    s.num_expert_groups = static_cast<uint32_t>(r.u64("groups", 1));
    s.num_expert_groups_used = static_cast<uint32_t>(r.u64("groups_used", s.num_expert_groups));
    s.routed_scaling = r.f64("scale", 1.0);
    s.norm_topk = r.boolean("norm_topk", false);
    s.router_score_bias = r.boolean("score_bias", false);
}

}  // namespace

fs::path config_dir() {
    if (const char* env = std::getenv("MOERIG_CONFIG_DIR"); env && *env) return fs::path(env);
    return fs::path(MOERIG_CONFIG_DIR);
}

ModelSpec parse_model_spec(const YamlNode& n) {
    n.check_keys({"name", "display_name", "aliases", "arch", "hidden", "layers", "vocab", "max_context", "native_dtype",
                  "tied_embeddings", "attention", "ffn", "routing", "mtp_layers", "params"});
    ModelSpec s;
    s.name = n.str("name");
    s.display_name = n.str("display_name", s.name);
    s.arch = n.str("arch");
    s.source = n.file;
    s.hidden = n.u64("hidden");
    s.num_layers = static_cast<uint32_t>(n.u64("layers"));
    s.vocab = n.u64("vocab");
    s.max_context = n.u64("max_context");
    s.native_dtype = n.str("native_dtype", "bf16");
    s.tied_embeddings = n.boolean("tied_embeddings", false);
    parse_attention(n.at("attention"), s);
    parse_ffn(n.at("ffn"), s);
    if (auto r = n.get("routing")) parse_routing(*r, s);
    s.num_mtp_layers = static_cast<uint32_t>(n.u64("mtp_layers", 0));
    if (auto p = n.get("params")) {
        p->check_keys({"total", "active", "active_precision", "active_excludes_embeddings"});
        s.published_total_params = p->f64("total", 0);
        s.published_active_params = p->f64("active", 0);
        s.published_active_precision = p->f64("active_precision", 0);
        s.active_excludes_embeddings = p->boolean("active_excludes_embeddings", false);
    }
    s.validate();
    return s;
}

ModelSpec load_model_yaml(const fs::path& file) {
    return parse_model_spec(YamlNode::load_file(file));
}

std::vector<std::string> catalog_model_names() {
    std::vector<std::string> out;
    for (const auto& p : model_files()) out.push_back(p.stem().string());
    return out;
}

ModelSpec load_catalog_model(const std::string& name) {
    const std::string key = name_key(name);
    std::vector<std::string> names;
    for (const auto& file : model_files()) {
        names.push_back(file.stem().string());
        if (name_key(file.stem().string()) == key) return load_model_yaml(file);
    }
    // Aliases need the files read; the catalog is a dozen small files.
    for (const auto& file : model_files()) {
        const auto root = YamlNode::load_file(file);
        for (const auto& alias : root.strings("aliases")) {
            if (name_key(alias) == key) return parse_model_spec(root);
        }
    }
    MOERIG_THROW(ConfigError, "unknown model '{}'{}; catalog models are in {}", name, did_you_mean(name, names),
                 (config_dir() / "models").string());
}

CardCatalog CardCatalog::load_default() {
    return load(config_dir() / "cards.yaml");
}

CardCatalog CardCatalog::load(const fs::path& file) {
    return parse(YamlNode::load_file(file));
}

CardCatalog CardCatalog::parse(const YamlNode& root) {
    CardCatalog cat;
    cat.file_ = root.file;
    for (const auto& c : root.at("cards").items()) {
        c.check_keys({"name", "aliases", "compute_capability", "vram", "mem_bw", "fp32_tflops", "fp16_tflops",
                      "int8_tops", "max_pcie_gen", "max_pcie_lanes", "tdp_watts", "reserve"});
        CardSpec s;
        s.name = c.str("name");
        s.aliases = c.strings("aliases");
        s.compute_capability = c.f64("compute_capability");
        s.vram_bytes = c.bytes("vram");
        s.mem_bw_bytes_per_s = c.rate("mem_bw");
        s.fp32_flops = c.f64("fp32_tflops") * 1e12;
        s.fp16_flops = c.f64("fp16_tflops") * 1e12;
        s.int8_ops = c.f64("int8_tops", 0) * 1e12;
        s.max_pcie_gen = static_cast<uint32_t>(c.u64("max_pcie_gen"));
        s.max_pcie_lanes = static_cast<uint32_t>(c.u64("max_pcie_lanes"));
        s.tdp_watts = c.f64("tdp_watts", 0);
        s.reserve_bytes = c.bytes("reserve");
        MOERIG_CHECK(s.vram_bytes > s.reserve_bytes, ConfigError, "{}: reserve ({} bytes) must be below vram ({})",
                     c.where("reserve"), s.reserve_bytes, s.vram_bytes);
        MOERIG_CHECK(s.compute_capability > 0 && s.fp32_flops >= 0 && s.fp16_flops >= 0 && s.int8_ops >= 0, ConfigError,
                     "{}: rates and compute capability must be positive", c.where());
        MOERIG_CHECK(cat.find_opt(s.name) == nullptr, ConfigError, "{}: card '{}' is listed twice", c.where(), s.name);
        cat.cards_.push_back(std::move(s));
    }
    return cat;
}

const CardSpec* CardCatalog::find_opt(const std::string& name) const {
    const std::string key = name_key(name);
    for (const auto& c : cards_) {
        if (name_key(c.name) == key) return &c;
    }
    for (const auto& c : cards_) {
        for (const auto& a : c.aliases) {
            if (name_key(a) == key) return &c;
        }
    }
    return nullptr;
}

const CardSpec& CardCatalog::find(const std::string& name) const {
    if (const CardSpec* c = find_opt(name)) return *c;
    std::vector<std::string> candidates = names();
    for (const auto& c : cards_) candidates.insert(candidates.end(), c.aliases.begin(), c.aliases.end());
    MOERIG_THROW(ConfigError, "unknown card '{}'{}; known cards are listed in {}", name, did_you_mean(name, candidates),
                 file_.empty() ? std::string("cards.yaml") : file_);
}

std::vector<std::string> CardCatalog::names() const {
    std::vector<std::string> out;
    for (const auto& c : cards_) out.push_back(c.name);
    return out;
}

}  // namespace moerig::sharding
