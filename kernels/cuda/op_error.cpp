// Host side of op_error.h: turns launcher messages into the typed moerig errors.
#include "kernels/cuda/op_error.h"

#include "kernels/error.h"

namespace moerig::kernels::cuda {

void throw_unsupported(const char* op, const char* what) {
    throw UnsupportedError(fmt::format("{}: {}", op, what));
}

void throw_bad_args(const char* op, const char* what) {
    throw ConfigError(fmt::format("{}: {}", op, what));
}

}  // namespace moerig::kernels::cuda
