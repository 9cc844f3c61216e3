#!/usr/bin/env python3
"""Writes tests/data/quant/: for each quantisation type, ggml's own reference quantisation and dequantisation of
a fixed pseudo-random row, so tests can check moerig's block layouts and quantizers byte for byte.

ggml's functions come from the libggml-base.so that llama-cpp-python ships (quantize_row_<type>_ref,
dequantize_row_<type>); the gguf package's numpy dequantizer cross-checks every decoded row.

Run from the repo root:  python3 tools/make_quant_fixtures.py
Each <type>.bin holds n float32 inputs, then the quantised bytes, then n float32 decoded values; index.json lists
n, byte counts and the ggml version.
"""
import ctypes
import json
import os
import pathlib

import gguf
import llama_cpp
import numpy as np

N = 512  # two K-quant super-blocks, sixteen 32-wide blocks
TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "MXFP4"]


def ggml_name(name):
    """ggml's C spelling of a type in function names: q4_0, q4_K, mxfp4."""
    return name.lower().replace("_k", "_K")


def main():
    root = pathlib.Path(__file__).resolve().parent.parent
    out = root / "tests" / "data" / "quant"
    out.mkdir(parents=True, exist_ok=True)
    libdir = pathlib.Path(llama_cpp.__file__).parent / "lib"
    lib = ctypes.CDLL(str(libdir / "libggml-base.so"))
    version = sorted(p.name for p in libdir.glob("libggml-base.so.*"))[-1].removeprefix("libggml-base.so.")

    rng = np.random.default_rng(20261128)
    # Gaussian values with a few outliers and blocks of very different scales, as real weights have.
    x = rng.standard_normal(N).astype(np.float32)
    x *= np.repeat(np.array([0.02, 1.0, 0.3, 5.0, 0.001, 0.7, 2.0, 0.05], dtype=np.float32), N // 8)
    x[rng.integers(0, N, 6)] *= 8.0
    x[64:96] = np.abs(x[64:96])  # one block with no negative values (exercises the min of Q4_1/Q5_*/K-quants)

    index = {"generator": "tools/make_quant_fixtures.py", "ggml_version": version, "n": N, "types": {}}
    for name in TYPES:
        qtype = getattr(gguf.GGMLQuantizationType, name)
        block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
        nbytes = N // block_elems * block_bytes
        quant = ctypes.create_string_buffer(nbytes)
        q_fn = getattr(lib, f"quantize_row_{ggml_name(name)}_ref")
        q_fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        q_fn(x.ctypes.data, quant, N)
        dq = np.zeros(N, dtype=np.float32)
        dq_fn = getattr(lib, f"dequantize_row_{ggml_name(name)}")
        dq_fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        dq_fn(quant, dq.ctypes.data, N)
        qbytes = np.frombuffer(quant.raw, dtype=np.uint8)
        py = gguf.quants.dequantize(qbytes, qtype).astype(np.float32).reshape(-1)
        assert np.array_equal(py, dq), f"{name}: gguf python and ggml disagree on the decoded values"
        (out / f"{name}.bin").write_bytes(x.tobytes() + quant.raw + dq.tobytes())
        index["types"][name] = {"quant_bytes": nbytes, "file": f"{name}.bin"}
        print(f"{name}: {nbytes} bytes, max |x - dq| = {np.max(np.abs(x - dq)):.4g}")
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")


if __name__ == "__main__":
    main()
