// Helpers shared by the benchmarks (which do not link the test helpers of tests/common).
#pragma once

#include <cmath>
#include <vector>

namespace moerig::bench {

/// Normalised mean squared error of got against ref: sum (got - ref)^2 / sum ref^2. Infinite when got holds a
/// non-finite value (a plain sum would give NaN, which passes every "nmse > bound" check).
inline double nmse(const std::vector<float>& got, const std::vector<float>& ref) {
    double err = 0, norm = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        if (!std::isfinite(got[i])) return INFINITY;
        const double d = static_cast<double>(got[i]) - ref[i];
        err += d * d;
        norm += static_cast<double>(ref[i]) * ref[i];
    }
    return err / norm;
}

}  // namespace moerig::bench
