#!/usr/bin/env bash
# Builds the libFuzzer harnesses in tests/fuzz (clang++, ASan + UBSan) straight from the sources they need into
# build-fuzz/, and runs each for SECONDS (default 60) from the seed corpus in tests/fuzz/corpus. Exits non-zero
# when a harness finds a crash, a sanitizer report or a leak; the reproducer is left in build-fuzz/.
# Usage: tools/fuzz.sh [SECONDS]   (FUZZ_SEED=N picks libFuzzer's seed; CI uses the fixed default so that a
# run explores the same inputs each time; pass another seed to explore further)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
seed=${FUZZ_SEED:-1}
out=${FUZZ_BUILD_DIR:-build-fuzz}
cxx=${FUZZ_CXX:-clang++}
mkdir -p "$out/obj"

san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
cxxflags="-std=c++20 -O1 -g -I. -DMOERIG_TEST_DATA=\"$PWD/tests/data\" $san"
libs="-lfmt -lpcre2-8"
srcs=(formats/gguf.cpp formats/mapped_file.cpp formats/safetensors.cpp kernels/dtype.cpp runtime/tokenizer.cpp runtime/tokenizer_spm.cpp
      runtime/tokenizer_bpe.cpp runtime/tokenizer_pretokenize.cpp runtime/utf8_stream.cpp runtime/tokenizer_hf.cpp
      runtime/tokenizer_nfc.cpp)

# Library objects, rebuilt when their source or a header is newer.
objs=()
for src in "${srcs[@]}"; do
    obj="$out/obj/$(echo "$src" | tr / _).o"
    if [ ! -f "$obj" ] || [ -n "$(find "$src" formats runtime kernels -name '*.h' -newer "$obj" -print -quit)" ] ||
       [ "$src" -nt "$obj" ]; then
        echo "fuzz: compiling $src" >&2
        $cxx $cxxflags -fsanitize=fuzzer-no-link -c "$src" -o "$obj"
    fi
    objs+=("$obj")
done

declare -A corpus=([fuzz_gguf]=gguf [fuzz_safetensors]=safetensors [fuzz_tokenizer]=text [fuzz_hf_tokenizer]=hf_tokenizer)
failed=()
for harness in fuzz_gguf fuzz_safetensors fuzz_tokenizer fuzz_hf_tokenizer; do
    echo "fuzz: building $harness" >&2
    $cxx $cxxflags -fsanitize=fuzzer "tests/fuzz/$harness.cpp" "${objs[@]}" $libs -o "$out/$harness"
    work="$out/corpus_${corpus[$harness]}"
    mkdir -p "$work"
    echo "fuzz: running $harness for ${secs}s" >&2
    if ! (cd "$out" && "./$harness" -seed="$seed" -max_total_time="$secs" -max_len=65536 -timeout=20 -rss_limit_mb=4096 \
            -print_final_stats=1 "corpus_${corpus[$harness]}" "../tests/fuzz/corpus/${corpus[$harness]}" \
            > "$harness.log" 2>&1); then
        echo "fuzz: $harness FAILED, see $out/$harness.log:" >&2
        grep -E "ERROR|SUMMARY|Test unit written" "$out/$harness.log" | head -20 >&2 || true
        failed+=("$harness")
    else
        grep -E "stat::number_of_executed_units|cov:" "$out/$harness.log" | tail -2 >&2 || true
    fi
done
if ((${#failed[@]})); then
    echo "fuzz: crashes in ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: no crashes" >&2
