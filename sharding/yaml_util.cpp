// YAML access with errors that name file, line and field; size and rate parsing with units.
#include "sharding/yaml_util.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <sstream>

#include "kernels/error.h"
#include "sharding/suggest.h"

namespace moerig::sharding {
namespace {

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// Splits "8.5 GiB" into 8.5 and "gib"; false when there is no leading number or trailing junk.
bool split_number(const std::string& text, double& value, std::string& unit) {
    const char* begin = text.c_str();
    char* end = nullptr;
    value = std::strtod(begin, &end);
    if (end == begin || !std::isfinite(value)) return false;
    std::string rest(end);
    std::string trimmed;
    for (char c : rest) {
        if (!std::isspace(static_cast<unsigned char>(c))) trimmed.push_back(c);
    }
    unit = lower(trimmed);
    return true;
}

std::optional<double> unit_scale(const std::string& unit) {
    if (unit.empty() || unit == "b") return 1.0;
    if (unit == "kb") return 1e3;
    if (unit == "mb") return 1e6;
    if (unit == "gb") return 1e9;
    if (unit == "tb") return 1e12;
    if (unit == "kib") return 1024.0;
    if (unit == "mib") return 1024.0 * 1024;
    if (unit == "gib") return 1024.0 * 1024 * 1024;
    if (unit == "tib") return 1024.0 * 1024 * 1024 * 1024;
    return std::nullopt;
}

}  // namespace

std::optional<uint64_t> parse_bytes(const std::string& text) {
    double v = 0;
    std::string unit;
    if (!split_number(text, v, unit) || v < 0) return std::nullopt;
    const auto scale = unit_scale(unit);
    if (!scale) return std::nullopt;
    const double bytes = v * *scale;
    if (bytes > 1.8e19) return std::nullopt;
    return static_cast<uint64_t>(std::llround(bytes));
}

std::optional<double> parse_rate(const std::string& text) {
    double v = 0;
    std::string unit;
    if (!split_number(text, v, unit) || v < 0) return std::nullopt;
    if (unit.empty()) return v;  // bare numbers are bytes/s
    if (unit.size() < 2 || unit.substr(unit.size() - 2) != "/s") return std::nullopt;
    std::string base = unit.substr(0, unit.size() - 2);
    double bits = 1.0;
    for (const char* suffix : {"bit", "bps"}) {
        const std::string s(suffix);
        if (base.size() >= s.size() && base.substr(base.size() - s.size()) == s) {
            base = base.substr(0, base.size() - s.size()) + "b";
            bits = 1.0 / 8;
            break;
        }
    }
    const auto scale = unit_scale(base);
    if (!scale) return std::nullopt;
    return v * *scale * bits;
}

YamlNode YamlNode::load_file(const std::filesystem::path& file) {
    std::ifstream in(file);
    MOERIG_CHECK(in.good(), ConfigError, "{}: cannot open file", file.string());
    std::stringstream ss;
    ss << in.rdbuf();
    return load_string(ss.str(), file.string());
}

YamlNode YamlNode::load_string(const std::string& text, const std::string& label) {
    try {
        YamlNode n{YAML::Load(text), label, ""};
        MOERIG_CHECK(n.node.IsMap(), ConfigError, "{}: expected a YAML mapping at the top level", label);
        return n;
    } catch (const YAML::Exception& e) {
        MOERIG_THROW(ConfigError, "{}:{}:{}: YAML syntax error: {}", label, e.mark.line + 1, e.mark.column + 1, e.msg);
    }
}

int YamlNode::line() const {
    if (!node.IsDefined()) return 0;
    const auto m = node.Mark();
    return m.is_null() ? 0 : m.line + 1;
}

std::string YamlNode::where() const {
    const int l = line();
    const std::string at = l > 0 ? fmt::format("{}:{}", file, l) : file;
    return path.empty() ? at : fmt::format("{}: {}", at, path);
}

std::string YamlNode::where(const std::string& key) const {
    YamlNode child{node, file, path.empty() ? key : path + "." + key};
    return child.where();
}

bool YamlNode::has(const std::string& key) const {
    return node.IsMap() && node[key].IsDefined() && !node[key].IsNull();
}

std::optional<YamlNode> YamlNode::get(const std::string& key) const {
    if (!has(key)) return std::nullopt;
    return YamlNode{node[key], file, path.empty() ? key : path + "." + key};
}

YamlNode YamlNode::at(const std::string& key) const {
    MOERIG_CHECK(node.IsMap(), ConfigError, "{}: expected a mapping holding '{}'", where(), key);
    auto child = get(key);
    MOERIG_CHECK(child.has_value(), ConfigError, "{}: missing required field '{}'", where(key), key);
    return *child;
}

void YamlNode::check_keys(const std::vector<std::string>& allowed) const {
    if (!node.IsMap()) return;
    for (const auto& kv : node) {
        const std::string key = kv.first.Scalar();
        if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
        const YamlNode child{kv.first, file, path.empty() ? key : path + "." + key};
        MOERIG_THROW(ConfigError, "{}: unknown field '{}'{}", child.where(), key, did_you_mean(key, allowed));
    }
}

std::vector<YamlNode> YamlNode::items() const {
    MOERIG_CHECK(node.IsSequence(), ConfigError, "{}: expected a list", where());
    std::vector<YamlNode> out;
    for (size_t i = 0; i < node.size(); ++i) {
        out.push_back(YamlNode{node[i], file, path + "[" + std::to_string(i) + "]"});
    }
    return out;
}

std::string YamlNode::as_string() const {
    MOERIG_CHECK(node.IsScalar(), ConfigError, "{}: expected a string", where());
    return node.Scalar();
}

double YamlNode::as_double() const {
    MOERIG_CHECK(node.IsScalar(), ConfigError, "{}: expected a number", where());
    double v = 0;
    std::string unit;
    MOERIG_CHECK(split_number(node.Scalar(), v, unit) && unit.empty(), ConfigError, "{}: expected a number, got '{}'",
                 where(), node.Scalar());
    return v;
}

uint64_t YamlNode::as_u64() const {
    const double v = as_double();
    MOERIG_CHECK(v >= 0 && v == std::floor(v) && v < 1.8e19, ConfigError,
                 "{}: expected a non-negative integer, got '{}'", where(), node.Scalar());
    return static_cast<uint64_t>(v);
}

bool YamlNode::as_bool() const {
    MOERIG_CHECK(node.IsScalar(), ConfigError, "{}: expected true or false", where());
    const std::string s = lower(node.Scalar());
    if (s == "true" || s == "yes" || s == "on") return true;
    if (s == "false" || s == "no" || s == "off") return false;
    MOERIG_THROW(ConfigError, "{}: expected true or false, got '{}'", where(), node.Scalar());
}

uint64_t YamlNode::as_bytes() const {
    MOERIG_CHECK(node.IsScalar(), ConfigError, "{}: expected a size such as 8 GiB", where());
    const auto v = parse_bytes(node.Scalar());
    MOERIG_CHECK(v.has_value(), ConfigError,
                 "{}: expected a non-negative size such as 8589934592, '8 GiB' or '300 MiB', got '{}'", where(),
                 node.Scalar());
    return *v;
}

double YamlNode::as_rate() const {
    MOERIG_CHECK(node.IsScalar(), ConfigError, "{}: expected a rate such as 448 GB/s", where());
    const auto v = parse_rate(node.Scalar());
    MOERIG_CHECK(v.has_value(), ConfigError,
                 "{}: expected a non-negative rate such as '448 GB/s', '10 Gbit/s' or 1.25e9, got '{}'", where(),
                 node.Scalar());
    return *v;
}

std::string YamlNode::str(const std::string& key, const std::string& dflt) const {
    auto c = get(key);
    return c ? c->as_string() : dflt;
}
double YamlNode::f64(const std::string& key, double dflt) const {
    auto c = get(key);
    return c ? c->as_double() : dflt;
}
uint64_t YamlNode::u64(const std::string& key, uint64_t dflt) const {
    auto c = get(key);
    return c ? c->as_u64() : dflt;
}
bool YamlNode::boolean(const std::string& key, bool dflt) const {
    auto c = get(key);
    return c ? c->as_bool() : dflt;
}
uint64_t YamlNode::bytes(const std::string& key, uint64_t dflt) const {
    auto c = get(key);
    return c ? c->as_bytes() : dflt;
}
double YamlNode::rate(const std::string& key, double dflt) const {
    auto c = get(key);
    return c ? c->as_rate() : dflt;
}

std::vector<std::string> YamlNode::strings(const std::string& key) const {
    std::vector<std::string> out;
    auto c = get(key);
    if (!c) return out;
    for (const auto& item : c->items()) out.push_back(item.as_string());
    return out;
}

}  // namespace moerig::sharding
