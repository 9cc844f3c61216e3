// Test helper: runs the built `moerig` binary (MOERIG_CLI) through the shell and captures its exit code,
// stdout and stderr, so CLI tests check what a person or a script would see.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace moerig::testing {

struct CliRun {
    int code = -1;
    std::string out;  // stdout
    std::string err;  // stderr
};

/// Runs `moerig ARGS` (ARGS already shell-quoted) and waits for it.
inline CliRun run_moerig(const std::string& args) {
    const auto err_path =
        std::filesystem::temp_directory_path() / ("moerig_cli_" + std::to_string(::getpid()) + "_stderr.txt");
    const std::string cmd = std::string(MOERIG_CLI) + " " + args + " 2>" + err_path.string();
    CliRun r;
    FILE* pipe = ::popen(cmd.c_str(), "r");
    if (!pipe) return r;
    std::array<char, 4096> buf;
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.out.append(buf.data(), n);
    const int status = ::pclose(pipe);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::ifstream in(err_path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    r.err = s.str();
    std::filesystem::remove(err_path);
    return r;
}

}  // namespace moerig::testing
