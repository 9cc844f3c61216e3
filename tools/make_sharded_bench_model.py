#!/usr/bin/env python3
"""Writes a Qwen3-MoE-shaped synthetic GGUF of a few hundred MB for the sharded-runtime benchmarks
(bench_sharded, bench_calibrated): n_embd 1024, 8 layers, 16 query / 4 KV heads of 128 with q/k norm, 32 experts
of width 512 with 8 active, Q8_0 matrices, random weights. Decode is memory-bound, so random weights change nothing
about the work: the router still picks 8 of 32 experts per token. The tokenizer is copied from the small qwen3moe
test fixture (1501 tokens), so the output head is small and the experts dominate, as in the real model.

Usage: python3 tools/make_sharded_bench_model.py OUT.gguf [--layers 8] [--experts 32]
(needs the gguf and numpy Python packages; the file is a build artefact, never commit it)
"""
import argparse
import os

import numpy as np
import gguf
from gguf import quants

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "tests", "data", "models", "qwen3moe-q4_k_m.gguf")


def tokenizer_fields(path: str) -> dict:
    r = gguf.GGUFReader(path)

    def value(key):
        return r.fields[key].contents()

    return dict(model=value("tokenizer.ggml.model"), pre=value("tokenizer.ggml.pre"),
                tokens=value("tokenizer.ggml.tokens"), types=value("tokenizer.ggml.token_type"),
                merges=value("tokenizer.ggml.merges"), bos=value("tokenizer.ggml.bos_token_id"),
                eos=value("tokenizer.ggml.eos_token_id"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--experts", type=int, default=32)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    E, n_head, n_head_kv, hd, n_ff, n_used = 1024, 16, 4, 128, 512, 8
    tok = tokenizer_fields(FIXTURE)
    nv = len(tok["tokens"])
    rng = np.random.default_rng(args.seed)

    w = gguf.GGUFWriter(args.out, "qwen3moe")
    w.add_name("moerig-sharded-bench-qwen3moe")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_block_count(args.layers)
    w.add_context_length(32768)
    w.add_embedding_length(E)
    w.add_feed_forward_length(3 * E)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_freq_base(1e6)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_expert_count(args.experts)
    w.add_expert_used_count(n_used)
    w.add_expert_feed_forward_length(n_ff)
    w.add_tokenizer_model(tok["model"])
    w.add_tokenizer_pre(tok["pre"])
    w.add_token_list(tok["tokens"])
    w.add_token_types(tok["types"])
    w.add_token_merges(tok["merges"])
    w.add_bos_token_id(tok["bos"])
    w.add_eos_token_id(tok["eos"])

    def mat(name, shape, gain=1.0):
        x = rng.standard_normal(shape, dtype=np.float32) * np.float32(gain / np.sqrt(shape[-1]))
        w.add_tensor(name, quants.quantize(x, gguf.GGMLQuantizationType.Q8_0),
                     raw_dtype=gguf.GGMLQuantizationType.Q8_0)

    def f32(name, x):
        w.add_tensor(name, np.ascontiguousarray(x, dtype=np.float32))

    def norm(name, n):
        f32(name, 1.0 + 0.1 * rng.standard_normal(n, dtype=np.float32))

    f32("token_embd.weight", rng.standard_normal((nv, E), dtype=np.float32))
    norm("output_norm.weight", E)
    mat("output.weight", (nv, E), 3.0)
    for i in range(args.layers):
        norm(f"blk.{i}.attn_norm.weight", E)
        mat(f"blk.{i}.attn_q.weight", (n_head * hd, E))
        mat(f"blk.{i}.attn_k.weight", (n_head_kv * hd, E))
        mat(f"blk.{i}.attn_v.weight", (n_head_kv * hd, E))
        norm(f"blk.{i}.attn_q_norm.weight", hd)
        norm(f"blk.{i}.attn_k_norm.weight", hd)
        mat(f"blk.{i}.attn_output.weight", (E, n_head * hd))
        norm(f"blk.{i}.ffn_norm.weight", E)
        f32(f"blk.{i}.ffn_gate_inp.weight", rng.standard_normal((args.experts, E), dtype=np.float32) * 2 / np.sqrt(E))
        mat(f"blk.{i}.ffn_gate_exps.weight", (args.experts, n_ff, E))
        mat(f"blk.{i}.ffn_up_exps.weight", (args.experts, n_ff, E))
        mat(f"blk.{i}.ffn_down_exps.weight", (args.experts, E, n_ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {args.out}: {os.path.getsize(args.out) / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
