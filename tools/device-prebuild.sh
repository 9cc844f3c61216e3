#!/usr/bin/env bash
# Builds the binaries that tools/device-check.sh runs, here, for a GPU machine that has the CUDA driver and
# toolkit libraries but none of our Debian build dependencies and no network (the lent H200, a bare rig).
# Output: ${PREBUILT_DIR:-.device-bin}/{bin,lib}: stripped binaries for sm_${CUDA_ARCH:-90} with x86-64-v3
# CPU code (no -march=native: the target's CPU may differ), plus the non-system shared libraries they need
# (fmt, yaml-cpp, protobuf, ...). CUDA runtime libraries (cublas, nccl) are taken from the target machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-device}
OUT=${PREBUILT_DIR:-.device-bin}
CUDA_ARCH=${CUDA_ARCH:-90}
bash tools/install-deps.sh
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DMOERIG_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" \
    -DMOERIG_NATIVE=OFF -DCMAKE_CXX_FLAGS="-march=x86-64-v3" >/dev/null
targets=(moerig_kernel_tests moerig_integration_tests moerig_unit_tests bench_cuda_decode moerig)
cmake --build "$BUILD_DIR" -j"$(nproc)" --target "${targets[@]}"
rm -rf "$OUT"
mkdir -p "$OUT/bin" "$OUT/lib"
for b in "$BUILD_DIR"/tests/moerig_kernel_tests "$BUILD_DIR"/tests/moerig_integration_tests \
         "$BUILD_DIR"/tests/moerig_unit_tests "$BUILD_DIR"/bench/bench_cuda_decode "$BUILD_DIR"/tools/moerig; do
    cp "$b" "$OUT/bin/"
    strip "$OUT/bin/$(basename "$b")"
done
# The CPU benchmarks of the sharded runtime (virtual cards on the GPU host's many cores) without CUDA code, so
# they stay small.
cmake -S . -B "$BUILD_DIR-cpu" -DCMAKE_BUILD_TYPE=Release -DMOERIG_CUDA=OFF -DMOERIG_NATIVE=OFF \
    -DCMAKE_CXX_FLAGS="-march=x86-64-v3" >/dev/null
cpu_targets=(make_bench_model bench_calibrated bench_sharded)
cmake --build "$BUILD_DIR-cpu" -j"$(nproc)" --target "${cpu_targets[@]}"
for t in "${cpu_targets[@]}"; do
    cp "$BUILD_DIR-cpu/bench/$t" "$OUT/bin/"
    strip "$OUT/bin/$t"
done
# Shared libraries outside the C/C++ runtime and the CUDA driver stack travel with the binaries.
keep_out='/(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|ld-linux-x86-64|libcuda|libcublas|libcublasLt|libnccl)\.so'
for b in "$OUT"/bin/*; do
    ldd "$b" | awk '/=> \//{print $3}'
done | sort -u | grep -Ev "$keep_out" | while read -r lib; do
    cp -L "$lib" "$OUT/lib/"
done
touch "$OUT/PREBUILT"
du -sh "$OUT"/bin/* "$OUT/lib"
