// Close-match suggestions for mistyped names (models, cards, rigs, quant mixes), by edit distance.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace moerig::sharding {

/// Levenshtein distance, case-insensitive, ignoring '-', '_' and ' ' differences cheaply (they count 1).
size_t edit_distance(std::string_view a, std::string_view b);

/// Up to max_results candidates closest to `name` (distance <= max(2, len/3), or sharing a prefix/substring),
/// best first.
std::vector<std::string> close_matches(std::string_view name, const std::vector<std::string>& candidates,
                                       size_t max_results = 3);

/// " (did you mean: a, b?)" or "" when there is no close match; for error messages.
std::string did_you_mean(std::string_view name, const std::vector<std::string>& candidates);

}  // namespace moerig::sharding
