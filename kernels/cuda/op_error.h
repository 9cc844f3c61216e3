// Argument errors raised by CUDA op launchers. Launchers live in .cu files (C++17, no fmt), so they hand a
// ready message to these functions, which throw the moerig error types from a C++20 translation unit.
#pragma once

namespace moerig::kernels::cuda {

/// Throws UnsupportedError("<op>: <what>").
[[noreturn]] void throw_unsupported(const char* op, const char* what);
/// Throws ConfigError("<op>: <what>") for shapes or pointers that break an op's contract.
[[noreturn]] void throw_bad_args(const char* op, const char* what);

}  // namespace moerig::kernels::cuda

/// Checks an op's precondition from a .cu launcher: throws ConfigError naming the op and the condition.
#define MOERIG_OP_REQUIRE(cond, op)                                                  \
    do {                                                                             \
        if (!(cond)) ::moerig::kernels::cuda::throw_bad_args(op, "requires " #cond); \
    } while (0)
