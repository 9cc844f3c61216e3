// Typed errors shared by every floor, and the check macros that raise them with file and line.
// Libraries throw; tools catch at the top and print one line (shared/STYLE.md, Errors).
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace moerig {

/// Base of all moerig errors. what() is the message a person reads; file/line say where it was raised.
class Error : public std::runtime_error {
  public:
    Error(std::string msg, const char* file = "", int line = 0)
        : std::runtime_error(std::move(msg)), file_(file), line_(line) {}
    const char* file() const { return file_; }
    int line() const { return line_; }

  private:
    const char* file_;
    int line_;
};

/// Bad configuration: YAML catalogs, rigs, CLI flags, plan files.
class ConfigError : public Error {
    using Error::Error;
};
/// Malformed model or data file: GGUF, safetensors, traces. Messages name the file and offset.
class FormatError : public Error {
    using Error::Error;
};
/// A card's memory budget would be exceeded.
class OutOfMemoryError : public Error {
    using Error::Error;
};
/// A feature the input asks for that moerig does not support (yet).
class UnsupportedError : public Error {
    using Error::Error;
};
class CudaError : public Error {
    using Error::Error;
};
class NcclError : public Error {
    using Error::Error;
};
class NetError : public Error {
    using Error::Error;
};

}  // namespace moerig

/// Throws ErrType with a fmt-formatted message when cond is false.
#define MOERIG_CHECK(cond, ErrType, ...)                                   \
    do {                                                                   \
        if (!(cond)) [[unlikely]] {                                        \
            throw ErrType(::fmt::format(__VA_ARGS__), __FILE__, __LINE__); \
        }                                                                  \
    } while (0)

/// Throws ErrType with a fmt-formatted message.
#define MOERIG_THROW(ErrType, ...) throw ErrType(::fmt::format(__VA_ARGS__), __FILE__, __LINE__)

/// Internal invariant: a failure is a moerig bug, reported with the failed expression.
#define MOERIG_ASSERT(cond)                                                                                         \
    do {                                                                                                            \
        if (!(cond)) [[unlikely]] {                                                                                 \
            throw ::moerig::Error(::fmt::format("internal error: {} ({}:{})", #cond, __FILE__, __LINE__), __FILE__, \
                                  __LINE__);                                                                        \
        }                                                                                                           \
    } while (0)
