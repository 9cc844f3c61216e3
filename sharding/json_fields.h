// JSON input files (Hugging Face config.json, generation_config.json, model.safetensors.index.json): reading
// the text, parsing it, and typed reads of an object's fields, with errors naming the input and the field.
// Shared by the planner's import (sharding/hf_import.cpp) and the engine's (runtime/hf_model.cpp).
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace moerig::sharding {

/// The whole text of a file; throws ConfigError naming it when it cannot be opened.
std::string read_text_file(const std::filesystem::path& path);

/// Parses JSON text; throws ConfigError naming label (and the byte offset of a syntax error).
nlohmann::json parse_json(const std::string& text, const std::string& label);

/// Typed reads of the fields of one JSON object; a field set to null counts as absent. Errors are ConfigError
/// naming label and the field.
class JsonFields {
  public:
    JsonFields(nlohmann::json j, std::string label) : j_(std::move(j)), label_(std::move(label)) {}

    const std::string& label() const { return label_; }
    bool has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }
    /// The field as it is (only for a field that has() it).
    const nlohmann::json& raw(const char* key) const { return j_[key]; }

    /// A non-negative integer below 2^63.
    uint64_t u64(const char* key) const;
    uint64_t u64(const char* key, uint64_t dflt) const { return has(key) ? u64(key) : dflt; }
    double f64(const char* key) const;
    double f64(const char* key, double dflt) const { return has(key) ? f64(key) : dflt; }
    bool boolean(const char* key, bool dflt) const;
    std::string str(const char* key) const;
    std::string str(const char* key, const std::string& dflt) const { return has(key) ? str(key) : dflt; }
    /// An integer or a list of integers (eos_token_id); empty when absent.
    std::vector<int32_t> ids(const char* key) const;

  private:
    nlohmann::json j_;
    std::string label_;
};

}  // namespace moerig::sharding
