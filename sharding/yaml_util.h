// Typed access to YAML nodes that turns every problem into one ConfigError naming the file, the line
// and the field: missing required fields, wrong types, negative or malformed sizes and rates.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace moerig::sharding {

/// A YAML node plus where it came from, so that errors can say "rig.yaml:12: cards[2].lanes: ...".
struct YamlNode {
    YAML::Node node;
    std::string file;  // file path or a label such as "<inline>"
    std::string path;  // dotted field path from the document root, e.g. "cards[2]"

    /// Loads a file; a syntax error becomes ConfigError "file:line:col: ...".
    static YamlNode load_file(const std::filesystem::path& file);
    /// Parses text (tests, inline rigs); `label` stands for the file name in messages.
    static YamlNode load_string(const std::string& text, const std::string& label);

    bool has(const std::string& key) const;
    /// Child that must exist (ConfigError otherwise).
    YamlNode at(const std::string& key) const;
    /// Child or nullopt.
    std::optional<YamlNode> get(const std::string& key) const;
    /// Elements of a sequence (ConfigError if this is not a sequence).
    std::vector<YamlNode> items() const;
    bool is_map() const { return node.IsMap(); }
    bool is_sequence() const { return node.IsSequence(); }

    /// Rejects keys of this mapping that are not in `allowed` (typos would otherwise be ignored silently):
    /// ConfigError "file:line: path.key: unknown field (did you mean: ...?)".
    void check_keys(const std::vector<std::string>& allowed) const;

    int line() const;  // 1-based, 0 when unknown
    /// "file:line: path" prefix for messages.
    std::string where() const;
    std::string where(const std::string& key) const;

    // Scalars of this node (ConfigError naming the field on a type mismatch).
    std::string as_string() const;
    double as_double() const;
    uint64_t as_u64() const;  // rejects negatives and fractions
    bool as_bool() const;
    uint64_t as_bytes() const;  // 8589934592, "8 GiB", "8GB", "300 MiB", "6.5e9"
    double as_rate() const;     // bytes/s: 1.25e9, "448 GB/s", "10 Gbit/s", "985 MB/s"

    // Required / defaulted fields of a map.
    std::string str(const std::string& key) const { return at(key).as_string(); }
    std::string str(const std::string& key, const std::string& dflt) const;
    double f64(const std::string& key) const { return at(key).as_double(); }
    double f64(const std::string& key, double dflt) const;
    uint64_t u64(const std::string& key) const { return at(key).as_u64(); }
    uint64_t u64(const std::string& key, uint64_t dflt) const;
    bool boolean(const std::string& key, bool dflt) const;
    uint64_t bytes(const std::string& key) const { return at(key).as_bytes(); }
    uint64_t bytes(const std::string& key, uint64_t dflt) const;
    double rate(const std::string& key) const { return at(key).as_rate(); }
    double rate(const std::string& key, double dflt) const;
    std::vector<std::string> strings(const std::string& key) const;  // missing -> empty
};

/// Parses a size such as "8 GiB", "6GB", "512 MiB", "1.5e9" into bytes; nullopt when malformed or negative.
std::optional<uint64_t> parse_bytes(const std::string& text);
/// Parses a rate such as "448 GB/s", "10 Gbit/s", "0.25 GB/s" into bytes per second.
std::optional<double> parse_rate(const std::string& text);

}  // namespace moerig::sharding
