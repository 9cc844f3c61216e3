#!/usr/bin/env bash
# Builds the core suite (GGUF/safetensors parsers, catalog, accounting, planner) with AddressSanitizer and
# UndefinedBehaviorSanitizer into build-asan/ and runs it: reads past a buffer, use after free and undefined
# behaviour that an optimised build lets pass silently (a planner read of a freed expert list once aborted only
# under some heap layouts). Exits non-zero on any report. SANITIZE_SUITES adds suites (e.g. moerig_kernel_tests).
# Usage: tools/sanitize.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${SANITIZE_BUILD_DIR:-build-asan}
suites=(moerig_core_tests ${SANITIZE_SUITES:-})
mkdir -p "$out"
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cmake -S . -B "$out" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOERIG_CUDA=OFF -DCMAKE_CXX_FLAGS="$san" \
    -DCMAKE_EXE_LINKER_FLAGS="$san" > "$out/configure.log"
cmake --build "$out" -j"$(nproc)" --target "${suites[@]}"
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
for suite in "${suites[@]}"; do
    echo "sanitize: running $suite (ASan + UBSan)" >&2
    "$out/tests/$suite" --gtest_brief=1
done
