#!/usr/bin/env bash
# One-shot GPU check of the CUDA backend on a borrowed machine (written for one H200, sm_90, < 8 minutes):
# dependencies, a fresh sm_90 build of only the needed targets, the CUDA kernel tests, CudaDevice/virtual
# cards/one-rank NCCL tests, the engine's GPU forward pass on every fixture model against the CPU engine, the
# device-copy communicator on 4 virtual cards, sharded runs with every card's experts on 4 virtual cards of the GPU,
# `moerig probe`, bench_cuda_decode, and the sharded runtime's CPU benchmarks on the host's cores. Every step logs to OUTDIR and a failing step does not stop the others;
# OUTDIR/summary.txt lists PASS/FAIL/SKIP per step plus the figures.
# Exit code: 0 when no step failed, 1 otherwise. At most 8 files are written, all directly in OUTDIR.
# Usage: tools/device-check.sh OUTDIR   (env: BUILD_DIR=build-device, CUDA_ARCH=90, JOBS=$(nproc))
# A machine without our Debian build dependencies (the lent H200 has none and no network) runs binaries
# built elsewhere by tools/device-prebuild.sh: when PREBUILT_DIR (default .device-bin) holds them, the
# dependency and build steps are skipped and those binaries run with their libraries on LD_LIBRARY_PATH.
set -u -o pipefail

OUT=${1:?usage: tools/device-check.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD_DIR=${BUILD_DIR:-build-device}
CUDA_ARCH=${CUDA_ARCH:-90}
JOBS=${JOBS:-$(nproc)}
SUMMARY="$OUT/summary.txt"
PREBUILT_DIR=${PREBUILT_DIR:-.device-bin}
PREBUILT=0
[ -f "$PREBUILT_DIR/PREBUILT" ] && PREBUILT=1
# Paths of the binaries each step runs (a fresh build, or the prebuilt set).
BIN_MOERIG="$BUILD_DIR/tools/moerig"
BIN_KERNEL_TESTS="$BUILD_DIR/tests/moerig_kernel_tests"
BIN_INTEGRATION_TESTS="$BUILD_DIR/tests/moerig_integration_tests"
BIN_BENCH="$BUILD_DIR/bench/bench_cuda_decode"
BIN_MAKE_MODEL="$BUILD_DIR/bench/make_bench_model"
BIN_CALIBRATED="$BUILD_DIR/bench/bench_calibrated"
BIN_SHARDED="$BUILD_DIR/bench/bench_sharded"
if [ $PREBUILT = 1 ]; then
    BIN_MAKE_MODEL="$PREBUILT_DIR/bin/make_bench_model"
    BIN_CALIBRATED="$PREBUILT_DIR/bin/bench_calibrated"
    BIN_SHARDED="$PREBUILT_DIR/bin/bench_sharded"
    BIN_MOERIG="$PREBUILT_DIR/bin/moerig"
    BIN_KERNEL_TESTS="$PREBUILT_DIR/bin/moerig_kernel_tests"
    BIN_INTEGRATION_TESTS="$PREBUILT_DIR/bin/moerig_integration_tests"
    BIN_BENCH="$PREBUILT_DIR/bin/bench_cuda_decode"
    # NCCL and cuBLAS come from the machine: the toolkit's lib64, or the Python wheels' copies.
    extra=$(python3 - <<'PY' 2>/dev/null
import importlib, os
dirs = []
for mod in ("nvidia.nccl", "nvidia.cublas", "nvidia.cuda_runtime"):
    try:
        m = importlib.import_module(mod)
        for p in m.__path__:
            if os.path.isdir(os.path.join(p, "lib")):
                dirs.append(os.path.join(p, "lib"))
    except Exception:
        pass
print(":".join(dirs))
PY
)
    export LD_LIBRARY_PATH="$(cd "$PREBUILT_DIR/lib" && pwd):/usr/local/cuda/lib64:/usr/local/cuda/lib:${extra}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
DRY_RUN=${DRY_RUN:-0}  # 1: run the CPU-side steps only (deps check, configure, build) for a rehearsal
export PATH="/usr/local/cuda/bin:$PATH"
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}

: >"$SUMMARY"
failures=0
t_start=$(date +%s)

note() { echo "$*" | tee -a "$SUMMARY"; }

# run_step NAME LOG TIMEOUT_S CMD...: appends the command's output to LOG, records PASS/FAIL with seconds.
run_step() {
    local name=$1 log=$2 limit=$3
    shift 3
    local t0 rc
    t0=$(date +%s)
    echo "=== $name: $* (timeout ${limit}s)" >>"$log"
    timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        note "PASS $name ($(($(date +%s) - t0))s)"
    else
        [ $rc -eq 124 ] && echo "=== $name: timed out after ${limit}s" >>"$log"
        note "FAIL $name (rc=$rc, $(($(date +%s) - t0))s, see $(basename "$log"))"
        failures=$((failures + 1))
    fi
    return $rc
}

skip() { note "SKIP $1 ($2)"; }

# gtest_figures LOG: the pass/fail counts and failed test names of a GoogleTest run.
gtest_figures() {
    grep -E '^\[==========\] [0-9]+ tests? from .* ran|^\[  (PASSED|SKIPPED|FAILED) +\] [0-9]+ tests?' "$1" |
        sed 's/^/    /' >>"$SUMMARY"
    grep -E '^\[  FAILED  \] [A-Za-z]' "$1" | sort -u | head -20 | sed 's/^/    /' >>"$SUMMARY"
}

note "device-check $(date -u +%FT%TZ) on $(hostname): repo $ROOT, build $BUILD_DIR, sm_$CUDA_ARCH, -j$JOBS"

# 1. Environment and Debian packages (the device machine may lack them, and may have no network).
DEPS_LOG="$OUT/deps.log"
{
    nvidia-smi -L 2>&1 || echo "nvidia-smi not available"
    nvidia-smi --query-gpu=name,memory.total,pcie.link.gen.current,pcie.link.width.current,driver_version \
        --format=csv 2>&1 || true
    command -v nvcc && nvcc --version | tail -2
    command -v cmake && cmake --version | head -1
    for h in /usr/local/cuda/include/nccl.h /usr/include/nccl.h; do [ -f "$h" ] && echo "found $h"; done
} >"$DEPS_LOG" 2>&1
if [ $PREBUILT = 1 ]; then
    note "PREBUILT binaries from $PREBUILT_DIR (tools/device-prebuild.sh): dependency and build steps skipped"
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" >>"$DEPS_LOG"
    for b in "$PREBUILT_DIR"/bin/*; do ldd "$b" >>"$DEPS_LOG" 2>&1; done
fi
targets="moerig_kernels_cuda moerig_kernel_tests moerig_integration_tests bench_cuda_decode moerig make_bench_model bench_calibrated bench_sharded"
declare -A target_ok
if [ $PREBUILT = 1 ]; then
    target_ok[moerig]=0; target_ok[moerig_kernel_tests]=0; target_ok[moerig_integration_tests]=0
    target_ok[bench_cuda_decode]=0
    [ -x "$BIN_MOERIG" ] && target_ok[moerig]=1
    [ -x "$BIN_KERNEL_TESTS" ] && target_ok[moerig_kernel_tests]=1
    [ -x "$BIN_INTEGRATION_TESTS" ] && target_ok[moerig_integration_tests]=1
    [ -x "$BIN_BENCH" ] && target_ok[bench_cuda_decode]=1
    for t in make_bench_model bench_calibrated bench_sharded; do target_ok[$t]=0; done
    [ -x "$BIN_MAKE_MODEL" ] && target_ok[make_bench_model]=1
    [ -x "$BIN_CALIBRATED" ] && target_ok[bench_calibrated]=1
    [ -x "$BIN_SHARDED" ] && target_ok[bench_sharded]=1
else
    pkgs=$(sed -n '/^pkgs=(/,/)/p' tools/install-deps.sh | tr -d '()' | sed 's/pkgs=//' | tr -s ' \n' ' ')
    missing=""
    for p in $pkgs; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "missing Debian packages:$missing" >>"$DEPS_LOG"
        if [ "$DRY_RUN" = 1 ]; then
            skip deps "missing:$missing; not installed in a dry run"
        elif run_step deps "$DEPS_LOG" 240 bash tools/install-deps.sh; then
            :
        else
            note "    apt could not install:$missing (continuing with what builds)"
        fi
    else
        note "PASS deps (all packages of tools/install-deps.sh present)"
    fi
    if ! command -v nvcc >/dev/null; then
        note "FAIL nvcc not found: the CUDA targets cannot be built"
        failures=$((failures + 1))
    fi

    # 2. Configure and build only the targets the checks need, each on its own so one failure spares the rest.
    BUILD_LOG="$OUT/build.log"
    built_ok=0
    if run_step configure "$BUILD_LOG" 180 cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" -DMOERIG_CUDA=ON -DMOERIG_TESTS=ON -DMOERIG_BENCHMARKS=ON; then
        built_ok=1
    fi
    for target in $targets; do target_ok[$target]=0; done
    if [ $built_ok -eq 0 ]; then
        skip build "configure failed"
    elif run_step build "$BUILD_LOG" 420 cmake --build "$BUILD_DIR" -j"$JOBS" --target $targets; then
        for target in $targets; do target_ok[$target]=1; done
    elif [ "$(tail -1 "$BUILD_LOG")" != "=== build: timed out after 420s" ]; then
        # A compile error somewhere: find out which targets do build, so that their checks still run.
        for target in $targets; do
            run_step "build $target" "$BUILD_LOG" 150 cmake --build "$BUILD_DIR" -j"$JOBS" --target "$target" &&
                target_ok[$target]=1
        done
    fi
fi

if [ "$DRY_RUN" = 1 ]; then
    note "dry run: GPU steps not run"
    note "total $(($(date +%s) - t_start))s, failures: $failures"
    [ $failures -eq 0 ]
    exit $?
fi

# 3. moerig probe: GPUs, trained PCIe link, P2P, and the rig YAML it would write.
PROBE_LOG="$OUT/probe.log"
if [ "${target_ok[moerig]}" = 1 ]; then
    run_step probe "$PROBE_LOG" 60 "$BIN_MOERIG" probe --out /tmp/moerig-probed-rig.yaml
    "$BIN_MOERIG" probe --json >>"$PROBE_LOG" 2>&1
    cat /tmp/moerig-probed-rig.yaml >>"$PROBE_LOG" 2>/dev/null
    grep '^GPU ' "$PROBE_LOG" | head -4 | sed 's/^/    /' >>"$SUMMARY"
else
    skip probe "moerig did not build"
fi

# 4. CUDA kernel tests: every op against its CPU reference.
KT_LOG="$OUT/kernel-tests.log"
if [ "${target_ok[moerig_kernel_tests]}" = 1 ]; then
    run_step "cuda kernel tests" "$KT_LOG" 300 "$BIN_KERNEL_TESTS" --gtest_filter='*Cuda*'
    gtest_figures "$KT_LOG"
    if grep -q 'SKIPPED.*no CUDA GPU' "$KT_LOG" || grep -q 'no CUDA GPU on this machine' "$KT_LOG"; then
        note "FAIL cuda kernel tests skipped: the GPU was not visible to CUDA"
        failures=$((failures + 1))
    fi
else
    skip "cuda kernel tests" "moerig_kernel_tests did not build"
fi

# 5. CudaDevice, virtual cards on one GPU, and the one-rank NCCL communicator.
RT_LOG="$OUT/runtime-tests.log"
if [ "${target_ok[moerig_integration_tests]}" = 1 ]; then
    run_step "cuda device + nccl tests" "$RT_LOG" 180 "$BIN_INTEGRATION_TESTS" \
        --gtest_filter='CudaDevice*:CudaGraphStep*:NcclCommunicator*'
    gtest_figures "$RT_LOG"
else
    skip "cuda device + nccl tests" "moerig_integration_tests did not build"
fi
# 5b. The engine's GPU forward pass on every fixture model against the CPU engine (greedy tokens, logits NMSE),
# `moerig run --gpu` against the CPU run, the device-copy communicator joining 4 virtual cards of the GPU
# (all_to_all_v, the unchanged dispatcher), and sharded runs whose expert FFNs run on 4 virtual cards of the GPU
# (CudaCardExperts: every fixture model under pipeline, expert-parallel and hybrid layouts against the one-card
# CPU engine, per-card GPU budgets, `moerig run --rig --gpu`). One log, so OUTDIR keeps at most 8 files.
ENGINE_LOG="$OUT/engine-tests.log"
if [ "${target_ok[moerig_integration_tests]}" = 1 ]; then
    export MOERIG_TEST_DATA_DIR="$ROOT/tests/data"  # prebuilt binaries carry the build machine's paths
    case "$BIN_MOERIG" in /*) export MOERIG_CLI_BIN="$BIN_MOERIG" ;; *) export MOERIG_CLI_BIN="$ROOT/$BIN_MOERIG" ;; esac
    run_step "cuda engine fixtures + 4-virtual-card communicator + sharded experts" \
        "$ENGINE_LOG" 330 "$BIN_INTEGRATION_TESTS" \
        --gtest_filter='CudaEngine*:*CudaEngine*:DeviceCopyCommunicator*:*CudaSharded*'
    gtest_figures "$ENGINE_LOG"
    if grep -q 'no CUDA GPU on this machine' "$ENGINE_LOG"; then
        note "FAIL cuda engine tests skipped: the GPU was not visible to CUDA"
        failures=$((failures + 1))
    fi
else
    skip "cuda engine fixtures + 4-virtual-card communicator + sharded experts" "moerig_integration_tests did not build"
fi

# 6. Decode benchmark: weight bytes per step / time vs device-to-device cudaMemcpy bandwidth.
BENCH_LOG="$OUT/bench.log"
if [ "${target_ok[bench_cuda_decode]}" = 1 ]; then
    run_step bench_cuda_decode "$BENCH_LOG" 240 "$BIN_BENCH" --iters 20
    grep -E '^(GPU|weights|validate|decode step|single|device-to-device|RESULT|note)' "$BENCH_LOG" |
        sed 's/^/    /' >>"$SUMMARY"
else
    skip bench_cuda_decode "bench_cuda_decode did not build"
fi

# 7. Issue #4 on this host's CPU cores (one core per virtual card, which the 2-core dev VM lacks): the synthetic
# Qwen3-shaped model, measured vs predicted decode on 4 calibrated virtual cards (wall clock and compute clock),
# and 16 sequences on the scaled 8-card x1 rig, the planner's strategy vs a layer split, in wall-clock time and on
# the compute clock.
if [ "${target_ok[make_bench_model]}" = 1 ] && [ "${target_ok[bench_calibrated]}" = 1 ] &&
    [ "${target_ok[bench_sharded]}" = 1 ]; then
    model=/tmp/moerig-sharded-bench.gguf
    export MOERIG_TEST_DATA_DIR="$ROOT/tests/data"
    if run_step "make bench model" "$BENCH_LOG" 60 "$BIN_MAKE_MODEL" "$model"; then
        mkdir -p /tmp/moerig-rigs
        run_step "sharded measured vs predicted (CPU)" "$BENCH_LOG" 120 "$BIN_CALIBRATED" "$model" 1 4 /tmp/moerig-rigs 64
        run_step "sharded batch 16 (CPU, wall clock)" "$BENCH_LOG" 150 "$BIN_SHARDED" --batch16 "$model" 1 \
            "$ROOT/bench/p106-8x-gen1x1-scaled.yaml" 16 wall
        run_step "sharded batch 16 (CPU, compute clock)" "$BENCH_LOG" 120 "$BIN_SHARDED" --batch16 "$model" 1 \
            "$ROOT/bench/p106-8x-gen1x1-scaled.yaml" 16 clock
        grep -E '^ +(cards|[0-9]) |^calibration|^fitted card|^batch 16 decode' "$BENCH_LOG" | sed 's/^/    /' >>"$SUMMARY"
    fi
else
    skip "sharded CPU benchmarks" "make_bench_model, bench_calibrated or bench_sharded missing"
fi

note "total $(($(date +%s) - t_start))s, failures: $failures"
[ $failures -eq 0 ]
