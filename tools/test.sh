#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds (CUDA code too when nvcc is present), checks the
# formatting, runs every GoogleTest suite through ctest (GPU tests skip without a GPU), the fuzzers
# for a bounded time and the core suite under ASan + UBSan (tools/sanitize.sh). The ctest summary is repeated as
# the last line so that it closes the output.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/build.sh
BUILD_DIR=${BUILD_DIR:-build}
cmake --build "$BUILD_DIR" --target format-check
ctest_log="$BUILD_DIR/ctest.log"
(cd "$BUILD_DIR" && ctest --output-on-failure -j"$(nproc)" --timeout 900) 2>&1 | tee "$ctest_log"
if [ -x tools/fuzz.sh ]; then bash tools/fuzz.sh 60; fi
bash tools/sanitize.sh
grep -E '^[0-9]+% tests passed' "$ctest_log" | tail -1
