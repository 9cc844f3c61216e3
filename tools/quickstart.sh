#!/usr/bin/env bash
# The main job on a built-in default: installs dependencies, builds, and plans a full-size MoE model on
# a built-in mining rig (`moerig plan` with no arguments). Extra arguments go to `moerig plan`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/build.sh >&2
exec "${BUILD_DIR:-build}/tools/moerig" plan "$@"
