#!/usr/bin/env bash
# Installs the Debian packages moerig builds and tests with. Fast when everything is present already.
# Usage: tools/install-deps.sh [--fixtures]   (--fixtures also installs the Python packages that
# tools/make_fixtures.py needs: gguf, numpy, llama-cpp-python, and tokenizers for
# tools/make_hf_tokenizer_fixtures.py; the tests themselves never need them).
#        tools/install-deps.sh --hf-fixtures   (Debian's CPU-only python3-torch and a venv /opt/hfvenv seeing it,
# with transformers pinned for tools/make_hf_fixtures.py; run that script with /opt/hfvenv/bin/python).
set -euo pipefail
pkgs=(build-essential cmake git pkg-config
      libboost-dev libprotobuf-dev protobuf-compiler libyaml-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev
      libcli11-dev nlohmann-json3-dev libfmt-dev libpcre2-dev clang clang-format libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "${1:-}" = "--fixtures" ]; then
    python3 -m pip install -q "gguf>=0.17" numpy "llama-cpp-python==0.3.36" "tokenizers>=0.20"
fi
if [ "${1:-}" = "--hf-fixtures" ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-torch python3-venv \
        python3-numpy >/dev/null
    [ -x /opt/hfvenv/bin/python ] || $SUDO /usr/bin/python3 -m venv --system-site-packages /opt/hfvenv
    $SUDO /opt/hfvenv/bin/pip install -q "transformers==4.51.3"
fi
