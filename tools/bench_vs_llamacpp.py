#!/usr/bin/env python3
"""Prompt and decode speed of moerig's CPU engine against llama.cpp on the same GGUF files, in one run.

Makes (once, cached) a Qwen3-30B-A3B-shaped synthetic MoE scaled down to ~1.4 GB at Q8_0 (n_embd 1024, 12 layers,
64 experts of width 512, 8 active, 16 query / 4 KV heads of 128, a 32k-token qwen2 vocabulary), quantises it with
llama.cpp itself (Q8_0 and Q4_K_M), then for each file measures llama.cpp (llama-cpp-python: F32 KV cache, no flash
attention, same thread count) and `moerig bench`: a 128-token prompt as one batch, then 64 single-token decode steps
feeding back the argmax; median of --reps runs after a warm-up. Prints tokens/s for both and moerig/llama.cpp.
Targets: decode >= 0.7x, prompt >= 0.5x.

Needs: pip install "gguf>=0.17" numpy "llama-cpp-python==0.3.36"   (or: bash tools/install-deps.sh --fixtures)
Usage: python3 tools/bench_vs_llamacpp.py --moerig build/tools/moerig [--cache-dir build/bench_models]
       [--threads 2] [--quants Q8_0 Q4_K_M] [-p 128] [-n 64] [--reps 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import gguf
import llama_cpp
from llama_cpp import Llama

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (vocabulary trimming and quantisation helpers)

SHAPE = dict(n_embd=1024, n_layer=12, n_head=16, n_head_kv=4, head_dim=128, n_expert=64, n_expert_used=8,
             n_ff_exp=512, n_vocab_keep=32000)


class RandomPool:
    """Slices of one large normal sample: random enough for timing, and fast to make for a GB-sized model."""

    def __init__(self, seed: int, size: int = 1 << 26):
        self.data = np.random.default_rng(seed).standard_normal(size, dtype=np.float32)
        self.pos = 0

    def take(self, shape, scale: float) -> np.ndarray:
        n = int(np.prod(shape))
        out = np.empty(n, dtype=np.float32)
        filled = 0
        while filled < n:
            k = min(n - filled, self.data.size - self.pos)
            out[filled:filled + k] = self.data[self.pos:self.pos + k]
            filled += k
            self.pos = (self.pos + k) % (self.data.size - 7)  # drift so that repeated blocks do not align
        return (out * np.float32(scale)).reshape(shape)


def write_source_model(path: str, vocab_dir: str) -> None:
    s = SHAPE
    vocab = mf.trim_vocab(os.path.join(vocab_dir, "ggml-vocab-qwen2.gguf"), s["n_vocab_keep"])
    E, hd, nv = s["n_embd"], s["head_dim"], len(vocab.tokens)
    w = gguf.GGUFWriter(path, "qwen3moe")
    w.add_name("moerig-bench-qwen3moe-scaled")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    mf.common_keys(w, s["n_layer"], E, 3 * E, s["n_head"], s["n_head_kv"], n_ctx_train=32768, rope_base=1e6)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_expert_count(s["n_expert"])
    w.add_expert_used_count(s["n_expert_used"])
    w.add_expert_feed_forward_length(s["n_ff_exp"])
    mf.write_vocab(w, vocab)
    rp = RandomPool(7)

    def mat(name, shape, gain=1.0):
        w.add_tensor(name, rp.take(shape, gain / np.sqrt(shape[-1])).astype(np.float16))

    def norm(name, n):
        w.add_tensor(name, (1.0 + 0.1 * rp.take((n,), 1.0)).astype(np.float32))

    w.add_tensor("token_embd.weight", rp.take((nv, E), 1.0).astype(np.float16))
    norm("output_norm.weight", E)
    mat("output.weight", (nv, E), 3.0)
    for i in range(s["n_layer"]):
        norm(f"blk.{i}.attn_norm.weight", E)
        mat(f"blk.{i}.attn_q.weight", (s["n_head"] * hd, E))
        mat(f"blk.{i}.attn_k.weight", (s["n_head_kv"] * hd, E))
        mat(f"blk.{i}.attn_v.weight", (s["n_head_kv"] * hd, E))
        norm(f"blk.{i}.attn_q_norm.weight", hd)
        norm(f"blk.{i}.attn_k_norm.weight", hd)
        mat(f"blk.{i}.attn_output.weight", (E, s["n_head"] * hd))
        norm(f"blk.{i}.ffn_norm.weight", E)
        w.add_tensor(f"blk.{i}.ffn_gate_inp.weight", rp.take((s["n_expert"], E), 2.0 / np.sqrt(E)))
        mat(f"blk.{i}.ffn_gate_exps.weight", (s["n_expert"], s["n_ff_exp"], E))
        mat(f"blk.{i}.ffn_up_exps.weight", (s["n_expert"], s["n_ff_exp"], E))
        mat(f"blk.{i}.ffn_down_exps.weight", (s["n_expert"], E, s["n_ff_exp"]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def ensure_models(cache: str, vocab_dir: str, quants: list[str]) -> dict[str, str]:
    os.makedirs(cache, exist_ok=True)
    src = os.path.join(cache, "bench-qwen3moe-f16.gguf")
    if not os.path.exists(src):
        print(f"making {src} ...", flush=True)
        write_source_model(src + ".tmp", vocab_dir)
        os.replace(src + ".tmp", src)
    out = {}
    for q in quants:
        dst = os.path.join(cache, f"bench-qwen3moe-{q.lower()}.gguf")
        if not os.path.exists(dst):
            print(f"quantising {dst} ...", flush=True)
            mf.quantize(src, dst + ".tmp", q)
            os.replace(dst + ".tmp", dst)
        out[q] = dst
    return out


def bench_llamacpp(path: str, threads: int, n_prompt: int, n_decode: int, reps: int, seed: int) -> dict:
    llm = Llama(model_path=path, n_ctx=n_prompt + n_decode + 8, n_batch=n_prompt, n_ubatch=n_prompt,
                n_threads=threads, n_threads_batch=threads, logits_all=False, type_k=0, type_v=0, flash_attn=False,
                verbose=False)
    n_vocab = llm.n_vocab()
    prompt = [int(t) for t in np.random.default_rng(seed).integers(0, n_vocab, n_prompt)]

    def last_logits():
        ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(n_vocab,))

    def once(n_dec):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        t1 = time.perf_counter()
        for _ in range(n_dec):
            llm.eval([int(np.argmax(last_logits()))])
        t2 = time.perf_counter()
        return n_prompt / (t1 - t0), (n_dec / (t2 - t1) if n_dec else 0.0)

    once(min(n_decode, 4))
    runs = [once(n_decode) for _ in range(reps)]
    del llm
    return {"prompt_tps": statistics.median(r[0] for r in runs), "decode_tps": statistics.median(r[1] for r in runs)}


def bench_moerig(moerig: str, path: str, threads: int, n_prompt: int, n_decode: int, reps: int) -> dict:
    cmd = [moerig, "bench", "-m", path, "-p", str(n_prompt), "-n", str(n_decode), "-t", str(threads), "-r",
           str(reps), "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
    return json.loads(res.stdout)


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--moerig", default=os.path.join(root, "build", "tools", "moerig"))
    ap.add_argument("--cache-dir", default=os.path.join(root, "build", "bench_models"))
    ap.add_argument("--vocab-dir", default=os.environ.get("MOERIG_VOCAB_DIR", "/work/vocab"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--quants", nargs="+", default=["Q8_0", "Q4_K_M"], choices=sorted(mf.FTYPES))
    ap.add_argument("-p", "--prompt", type=int, default=128)
    ap.add_argument("-n", "--decode", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    llama_cpp.llama_backend_init()
    models = ensure_models(args.cache_dir, args.vocab_dir, args.quants)
    rows = []
    for q, path in models.items():
        size_gb = os.path.getsize(path) / 1e9
        ref = bench_llamacpp(path, args.threads, args.prompt, args.decode, args.reps, seed=1)
        ours = bench_moerig(args.moerig, path, args.threads, args.prompt, args.decode, args.reps)
        rows.append({"quant": q, "file": path, "size_gb": size_gb, "threads": args.threads,
                     "llamacpp": ref, "moerig": {k: ours[k] for k in ("prompt_tps", "decode_tps")},
                     "prompt_ratio": ours["prompt_tps"] / ref["prompt_tps"],
                     "decode_ratio": ours["decode_tps"] / ref["decode_tps"] if ref["decode_tps"] else 0.0})
    print(f"\nQwen3-MoE-shaped synthetic model, {args.threads} threads, prompt {args.prompt}, decode {args.decode}, "
          f"median of {args.reps} (llama-cpp-python {llama_cpp.__version__})")
    print(f"{'quant':8} {'GB':>5} | {'llama.cpp pp':>12} {'moerig pp':>10} {'ratio':>6} (>=0.5) | "
          f"{'llama.cpp tg':>12} {'moerig tg':>10} {'ratio':>6} (>=0.7)")
    for r in rows:
        print(f"{r['quant']:8} {r['size_gb']:5.2f} | {r['llamacpp']['prompt_tps']:12.2f} "
              f"{r['moerig']['prompt_tps']:10.2f} {r['prompt_ratio']:6.2f}         | "
              f"{r['llamacpp']['decode_tps']:12.2f} {r['moerig']['decode_tps']:10.2f} {r['decode_ratio']:6.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
