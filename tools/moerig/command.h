// Subcommand registry of the `moerig` CLI. Each cmd_*.cpp defines one subcommand and registers it with
// a static Registrar, so adding a command touches no other file.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace moerig::cli {

/// Adds the subcommand's options to `sub` and returns the function that runs it (its exit code).
using CommandSetup = std::function<std::function<int()>(CLI::App& sub)>;

struct Command {
    std::string name;
    std::string help;
    CommandSetup setup;
    int order = 100;  // position in --help
};

std::vector<Command>& commands();

struct Registrar {
    Registrar(std::string name, std::string help, CommandSetup setup, int order = 100) {
        commands().push_back({std::move(name), std::move(help), std::move(setup), order});
    }
};

}  // namespace moerig::cli
