// Helpers of the GPU integration tests: skip without a GPU, the fixture models (MOERIG_TEST_DATA_DIR overrides
// the data folder for binaries built on another machine, tools/device-prebuild.sh), test names from fixture
// files, the CPU's top-1/top-2 logit gap (quantised models may break near-ties either way) and `moerig run
// --json` through the shell (MOERIG_CLI_BIN overrides the binary).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "kernels/cuda/check.h"
#include "tests/integration/llamacpp_reference.h"

#define MOERIG_REQUIRE_GPU()                                                                   \
    do {                                                                                       \
        if (::moerig::cuda::device_count() < 1) GTEST_SKIP() << "no CUDA GPU on this machine"; \
    } while (0)

namespace moerig::testing::gpu {

inline std::filesystem::path data_dir() {
    const char* env = std::getenv("MOERIG_TEST_DATA_DIR");
    return env != nullptr ? std::filesystem::path(env) : std::filesystem::path(MOERIG_TEST_DATA);
}

inline std::vector<std::filesystem::path> fixtures() {
    return reference_files(data_dir() / "models");
}

inline std::string fixture_name(const ::testing::TestParamInfo<std::filesystem::path>& info) {
    std::string s = info.param.stem().string();
    std::replace_if(
        s.begin(), s.end(), [](char c) { return !std::isalnum(static_cast<unsigned char>(c)); }, '_');
    return s;
}

/// Top-1 minus top-2 logit.
inline double top_gap(std::span<const float> logits) {
    float a = -INFINITY, b = -INFINITY;
    for (float v : logits) {
        if (v > a) {
            b = a;
            a = v;
        } else if (v > b) {
            b = v;
        }
    }
    return static_cast<double>(a) - static_cast<double>(b);
}

/// `moerig run ARGS --json` through the shell; null json when the output does not parse.
inline nlohmann::json run_json(const std::string& args) {
    const char* bin = std::getenv("MOERIG_CLI_BIN");
    const std::string cmd = std::string(bin != nullptr ? bin : MOERIG_CLI) + " run " + args + " --json 2>/dev/null";
    FILE* pipe = ::popen(cmd.c_str(), "r");
    EXPECT_NE(pipe, nullptr) << cmd;
    if (pipe == nullptr) return {};
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
    EXPECT_EQ(::pclose(pipe), 0) << cmd;
    return nlohmann::json::parse(out, nullptr, false);
}

}  // namespace moerig::testing::gpu
