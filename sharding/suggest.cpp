// Close-match suggestions by case-insensitive Levenshtein distance, for "unknown name" errors.
#include "sharding/suggest.h"

#include <algorithm>
#include <cctype>

namespace moerig::sharding {
namespace {

std::string fold(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    return out;
}

// Lower-case with separators dropped: "RTX 3060-12GB" and "rtx3060_12gb" compare equal.
std::string squash(std::string_view s) {
    std::string out;
    for (char c : fold(s)) {
        if (c != '-' && c != '_' && c != ' ' && c != '.') out.push_back(c);
    }
    return out;
}

}  // namespace

size_t edit_distance(std::string_view a, std::string_view b) {
    const std::string x = fold(a), y = fold(b);
    std::vector<size_t> prev(y.size() + 1), cur(y.size() + 1);
    for (size_t j = 0; j <= y.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= x.size(); ++i) {
        cur[0] = i;
        for (size_t j = 1; j <= y.size(); ++j) {
            const size_t subst = prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1);
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
        }
        std::swap(prev, cur);
    }
    return prev[y.size()];
}

std::vector<std::string> close_matches(std::string_view name, const std::vector<std::string>& candidates,
                                       size_t max_results) {
    const std::string key = squash(name);
    const size_t limit = std::max<size_t>(2, key.size() / 3);
    std::vector<std::pair<size_t, std::string>> scored;
    for (const auto& c : candidates) {
        const std::string sc = squash(c);
        size_t d = edit_distance(key, sc);
        // A name that contains the other (e.g. "mixtral" vs "mixtral-8x7b") is a good hint even when far.
        const bool contains = !key.empty() && (sc.find(key) != std::string::npos || key.find(sc) != std::string::npos);
        if (d <= limit || contains) scored.emplace_back(contains ? std::min(d, limit) : d, c);
    }
    std::stable_sort(scored.begin(), scored.end(), [](const auto& l, const auto& r) { return l.first < r.first; });
    std::vector<std::string> out;
    for (const auto& [d, c] : scored) {
        if (out.size() == max_results) break;
        if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
    }
    return out;
}

std::string did_you_mean(std::string_view name, const std::vector<std::string>& candidates) {
    const auto matches = close_matches(name, candidates);
    if (matches.empty()) return "";
    std::string out = " (did you mean: ";
    for (size_t i = 0; i < matches.size(); ++i) {
        if (i) out += ", ";
        out += matches[i];
    }
    return out + "?)";
}

}  // namespace moerig::sharding
