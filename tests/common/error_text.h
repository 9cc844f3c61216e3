// The message a call throws, for tests that check what an error names (file, line, field).
#pragma once

#include <functional>
#include <string>

#include "kernels/error.h"

namespace moerig::testing {

/// e.what() of the E that fn throws, or "<no error>" when it returns normally (other exceptions propagate).
template <class E = ConfigError>
std::string error_text(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const E& e) {
        return e.what();
    }
    return "<no error>";
}

}  // namespace moerig::testing
