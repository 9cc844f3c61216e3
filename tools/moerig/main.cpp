// Entry point of the `moerig` CLI: dispatches to the registered subcommands and turns every moerig
// error into one line on stderr and exit code 2.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "kernels/error.h"
#include "tools/moerig/command.h"

namespace moerig::cli {
std::vector<Command>& commands() {
    static std::vector<Command> list;
    return list;
}
}  // namespace moerig::cli

int main(int argc, char** argv) {
    using namespace moerig;
    CLI::App app{"moerig: run full-size Mixture-of-Experts LLMs on stacks of small GPUs"};
    app.set_version_flag("--version", MOERIG_VERSION);
    app.require_subcommand(0, 1);
    auto& cmds = cli::commands();
    std::stable_sort(cmds.begin(), cmds.end(), [](const auto& a, const auto& b) { return a.order < b.order; });
    std::function<int()> run;
    std::vector<std::pair<CLI::App*, std::function<int()>>> subs;
    for (auto& c : cmds) {
        CLI::App* sub = app.add_subcommand(c.name, c.help);
        subs.emplace_back(sub, c.setup(*sub));
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : 2;
    }
    try {
        for (auto& [sub, fn] : subs) {
            if (sub->parsed()) return fn();
        }
        // No subcommand: the main job on its built-in default is `moerig plan`.
        for (auto& [sub, fn] : subs) {
            if (sub->get_name() == "plan") return fn();
        }
        std::cout << app.help();
        return 0;
    } catch (const Error& e) {
        std::fprintf(stderr, "moerig: error: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "moerig: error: %s\n", e.what());
        return 2;
    }
}
