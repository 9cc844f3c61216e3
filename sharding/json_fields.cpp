// Reading and parsing JSON input files, and typed field reads whose errors name the input and the field.
#include "sharding/json_fields.h"

#include <fstream>
#include <sstream>

#include "kernels/error.h"

namespace moerig::sharding {

using nlohmann::json;

std::string read_text_file(const std::filesystem::path& path) {
    std::ifstream in(path);
    MOERIG_CHECK(in.good(), ConfigError, "{}: cannot open file", path.string());
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

json parse_json(const std::string& text, const std::string& label) {
    try {
        return json::parse(text);
    } catch (const json::parse_error& e) {
        MOERIG_THROW(ConfigError, "{}: invalid JSON at byte {}: {}", label, e.byte, e.what());
    } catch (const json::exception& e) {  // e.g. a number too large for any JSON number type
        MOERIG_THROW(ConfigError, "{}: invalid JSON: {}", label, e.what());
    }
}

uint64_t JsonFields::u64(const char* key) const {
    MOERIG_CHECK(has(key), ConfigError, "{}: missing field '{}'", label_, key);
    const auto& v = j_[key];
    MOERIG_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0, ConfigError,
                 "{}: field '{}' must be a non-negative integer, got {}", label_, key, v.dump());
    return v.get<uint64_t>();
}

double JsonFields::f64(const char* key) const {
    MOERIG_CHECK(has(key), ConfigError, "{}: missing field '{}'", label_, key);
    MOERIG_CHECK(j_[key].is_number(), ConfigError, "{}: field '{}' must be a number, got {}", label_, key,
                 j_[key].dump());
    return j_[key].get<double>();
}

bool JsonFields::boolean(const char* key, bool dflt) const {
    if (!has(key)) return dflt;
    MOERIG_CHECK(j_[key].is_boolean(), ConfigError, "{}: field '{}' must be true or false, got {}", label_, key,
                 j_[key].dump());
    return j_[key].get<bool>();
}

std::string JsonFields::str(const char* key) const {
    MOERIG_CHECK(has(key), ConfigError, "{}: missing field '{}'", label_, key);
    MOERIG_CHECK(j_[key].is_string(), ConfigError, "{}: field '{}' must be a string, got {}", label_, key,
                 j_[key].dump());
    return j_[key].get<std::string>();
}

std::vector<int32_t> JsonFields::ids(const char* key) const {
    std::vector<int32_t> out;
    if (!has(key)) return out;
    const auto& v = j_[key];
    auto one = [&](const json& x) {
        MOERIG_CHECK(x.is_number_integer() && x.get<int64_t>() >= 0, ConfigError,
                     "{}: field '{}' must be a token id or a list of token ids, got {}", label_, key, v.dump());
        out.push_back(static_cast<int32_t>(x.get<int64_t>()));
    };
    if (v.is_array()) {
        for (const auto& x : v) one(x);
    } else {
        one(v);
    }
    return out;
}

}  // namespace moerig::sharding
