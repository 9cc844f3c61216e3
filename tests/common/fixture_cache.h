// Test fixtures loaded once per test binary and kept: parsing the larger vocabularies and their truth files
// would dominate the tokenizer tests' time otherwise. Plus reading the JSON files that describe them.
#pragma once

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

namespace moerig::testing {

/// The JSON document in the file at path (a fixture's truth data); throws nlohmann's parse_error when the file is
/// missing or malformed.
inline nlohmann::json read_json_file(const std::string& path) {
    std::ifstream in(path);
    return nlohmann::json::parse(in);
}

/// Load(name), computed on the first call for that name and kept for the rest of the run. Load returns the fixture
/// by value; one cache per Load function. Not thread-safe (GoogleTest runs tests on one thread).
template <auto Load>
const auto& load_once(const std::string& name) {
    using Fixture = decltype(Load(name));
    static std::map<std::string, Fixture> cache;
    auto it = cache.find(name);
    if (it == cache.end()) it = cache.emplace(name, Load(name)).first;
    return it->second;
}

}  // namespace moerig::testing
