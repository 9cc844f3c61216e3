#!/usr/bin/env python3
"""Makes the llama.cpp parity fixtures under tests/data/models: small random-weight MoE models in real GGUF form
(one per architecture llama.cpp runs: Mixtral-style llama, qwen2moe, qwen3moe, olmoe, deepseek2 V3- and V2-Lite-style,
gpt-oss), F16/BF16 variants, llama.cpp-quantised variants (Q8_0, Q4_K_M, Q6_K), and llama.cpp's outputs for each.

Needs: pip install "gguf>=0.17" numpy "llama-cpp-python==0.3.36"   (or: bash tools/install-deps.sh --fixtures)
Usage: python3 tools/make_fixtures.py [--out tests/data/models] [--vocab-dir /work/vocab] [--only NAME ...]
The vocab files are llama.cpp's vocab-only GGUFs (vendor/llama.cpp/models/ggml-vocab-*.gguf in the llama-cpp-python
sdist). Everything is deterministic for a given llama-cpp-python version; README.md next to the output says more.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field

import numpy as np

import gguf
import llama_cpp
from llama_cpp import Llama

T = gguf.GGMLQuantizationType
TokenType = gguf.TokenType

PROMPTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Mixture-of-Experts models route every token to 2 of 8 experts; 3 + 4 = 7.",
    "def add(a, b):\n    return a + b\n",
    "Caf\u00e9 cr\u00e8me, na\u00efve r\u00e9sum\u00e9 \u2014 \u6771\u4eac and \u041c\u043e\u0441\u043a\u0432\u0430!",
]

PPL_TEXT = (
    "The history of computing is a story of machines that grew smaller while their work grew larger. "
    "Early computers filled rooms, drew enormous power and were programmed by rewiring panels by hand. "
    "Stored programs changed that: instructions became data, and a machine could load a new task in seconds. "
    "Transistors replaced vacuum tubes, integrated circuits packed thousands of transistors onto one chip, "
    "and microprocessors put a whole central processing unit into a single package. Memory followed the same "
    "path, from magnetic cores to dynamic random access memory, and storage moved from tape to spinning disks "
    "to flash. Each step made computing cheaper, so more people used it for more things. Networks joined the "
    "machines together, first inside universities and companies, then across the world. Graphics processors, "
    "built to draw triangles for games, turned out to be very good at the large matrix products that neural "
    "networks need, and language models trained on them learned to write text, translate and answer questions. "
    "The largest of these models are mixtures of experts: each layer holds many small feed-forward networks and "
    "a router that sends every token to only a few of them, so the model can be very large while each token "
    "costs little to compute. Running such a model on a pile of small graphics cards means deciding where every "
    "expert lives, how tokens travel between cards, and how to keep each card busy while the others work."
)

# Greedy decoding must be robust to last-bit differences between two correct implementations: a model seed is
# accepted only when every greedy step's top-1/top-2 logit gap is at least this (logits have a spread of ~3).
MIN_GREEDY_MARGIN = 0.01
NUM_GREEDY = 32
PPL_CTX = 64
REF_CTX = 256


# ----------------------------------------------------------------------------------------------------------------
# Vocabulary: a real llama.cpp vocab, trimmed to its first `num_keep` ids plus what tokenisation needs.
# ----------------------------------------------------------------------------------------------------------------
def byte_level_alphabet() -> set[str]:
    """The 256 characters GPT-2 style byte-level BPE maps bytes to."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
    bs += list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c) for c in cs}


@dataclass
class Vocab:
    model: str
    pre: str
    tokens: list[str]
    types: list[int]
    scores: list[float] | None
    merges: list[str] | None
    special: dict[str, int]  # bos/eos/unk/pad -> id
    flags: dict[str, bool] = field(default_factory=dict)  # add_bos_token / add_eos_token when the source sets them


def trim_vocab(path: str, num_keep: int, pre_override: str | None = None) -> Vocab:
    r = gguf.GGUFReader(path)
    f = r.fields

    def get(key, default=None):
        return f[key].contents() if key in f else default

    model = get("tokenizer.ggml.model")
    pre = get("tokenizer.ggml.pre", "default")
    tokens = get("tokenizer.ggml.tokens")
    types = get("tokenizer.ggml.token_type")
    scores = get("tokenizer.ggml.scores")
    merges = get("tokenizer.ggml.merges")
    special_keys = {"bos": "tokenizer.ggml.bos_token_id", "eos": "tokenizer.ggml.eos_token_id",
                    "unk": "tokenizer.ggml.unknown_token_id", "pad": "tokenizer.ggml.padding_token_id"}
    special = {k: get(v) for k, v in special_keys.items() if v in f}
    alphabet = byte_level_alphabet() if model == "gpt2" else set()
    keep = []
    for i, (tok, typ) in enumerate(zip(tokens, types)):
        if i in special.values():
            keep.append(i)
        elif i < num_keep and typ in (TokenType.NORMAL, TokenType.BYTE, TokenType.UNKNOWN):
            keep.append(i)
        elif tok in alphabet:  # byte-level BPE cannot encode without its whole alphabet
            keep.append(i)
    new_id = {old: new for new, old in enumerate(keep)}
    kept_text = {tokens[i] for i in keep}
    new_merges = None
    if merges is not None:
        new_merges = []
        for m in merges:
            left, _, right = m.partition(" ")
            if left in kept_text and right in kept_text and (left + right) in kept_text:
                new_merges.append(m)
    flags = {}
    for k in ("add_bos_token", "add_eos_token"):
        if f"tokenizer.ggml.{k}" in f:
            flags[k] = bool(get(f"tokenizer.ggml.{k}"))
    return Vocab(model=model, pre=pre_override or pre, tokens=[tokens[i] for i in keep],
                 types=[int(types[i]) for i in keep],
                 scores=[float(scores[i]) for i in keep] if scores is not None else None, merges=new_merges,
                 special={k: new_id[v] for k, v in special.items() if v in new_id}, flags=flags)


def write_vocab(w: gguf.GGUFWriter, v: Vocab) -> None:
    w.add_tokenizer_model(v.model)
    w.add_tokenizer_pre(v.pre)
    w.add_token_list(v.tokens)
    if v.scores is not None:
        w.add_token_scores(v.scores)
    w.add_token_types(v.types)
    if v.merges is not None:
        w.add_token_merges(v.merges)
    if "bos" in v.special:
        w.add_bos_token_id(v.special["bos"])
    if "eos" in v.special:
        w.add_eos_token_id(v.special["eos"])
    if "unk" in v.special:
        w.add_unk_token_id(v.special["unk"])
    if "pad" in v.special:
        w.add_pad_token_id(v.special["pad"])
    if "add_bos_token" in v.flags:
        w.add_add_bos_token(v.flags["add_bos_token"])
    if "add_eos_token" in v.flags:
        w.add_add_eos_token(v.flags["add_eos_token"])


# ----------------------------------------------------------------------------------------------------------------
# Weights. Shapes are numpy order (the reverse of ggml's ne): a ggml {n_embd, n_ff, n_expert} is (n_expert, n_ff,
# n_embd). Projections get std 1/sqrt(fan_in) so every block keeps unit scale; the output head gets a larger std so
# logits spread over a few units and greedy tokens differ from step to step.
# ----------------------------------------------------------------------------------------------------------------
class Weights:
    def __init__(self, seed: int, dtype: str):
        self.rng = np.random.default_rng(seed)
        self.dtype = dtype
        self.tensors: list[tuple[str, np.ndarray, T | None]] = []

    def add(self, name, arr, raw=None):
        self.tensors.append((name, arr, raw))

    def mat(self, name, shape, gain=1.0):
        self.add(name, (self.rng.standard_normal(shape) * gain / math.sqrt(shape[-1])).astype(np.float32))

    def norm(self, name, n):
        self.add(name, (1.0 + 0.1 * self.rng.standard_normal(n)).astype(np.float32))

    def vec(self, name, n, std):
        self.add(name, (std * self.rng.standard_normal(n)).astype(np.float32))

    @staticmethod
    def keeps_f32(name: str, arr: np.ndarray) -> bool:
        """The converter's rule: 1-D tensors, norms, routers and biases stay F32 in F16/BF16 files."""
        return (arr.ndim <= 1 or name.endswith("_norm.weight") or ".ffn_gate_inp" in name
                or not name.endswith(".weight"))

    def write(self, w: gguf.GGUFWriter) -> None:
        for name, arr, raw in self.tensors:
            if raw is not None:
                w.add_tensor(name, arr, raw_dtype=raw)
            elif self.dtype == "F32" or self.keeps_f32(name, arr):
                w.add_tensor(name, arr)
            elif self.dtype == "F16":
                w.add_tensor(name, arr.astype(np.float16))
            elif self.dtype == "BF16":
                w.add_tensor(name, gguf.quants.quantize(arr, T.BF16), raw_dtype=T.BF16)
            else:
                raise ValueError(self.dtype)


def std_attention(W, i, n_embd, n_head, n_head_kv, head_dim, bias=False, qk_norm=None):
    W.norm(f"blk.{i}.attn_norm.weight", n_embd)
    W.mat(f"blk.{i}.attn_q.weight", (n_head * head_dim, n_embd))
    W.mat(f"blk.{i}.attn_k.weight", (n_head_kv * head_dim, n_embd))
    W.mat(f"blk.{i}.attn_v.weight", (n_head_kv * head_dim, n_embd))
    if bias:
        W.vec(f"blk.{i}.attn_q.bias", n_head * head_dim, 0.1)
        W.vec(f"blk.{i}.attn_k.bias", n_head_kv * head_dim, 0.1)
        W.vec(f"blk.{i}.attn_v.bias", n_head_kv * head_dim, 0.1)
    if qk_norm == "head":
        W.norm(f"blk.{i}.attn_q_norm.weight", head_dim)
        W.norm(f"blk.{i}.attn_k_norm.weight", head_dim)
    elif qk_norm == "full":  # OLMoE normalises the whole q and k rows
        W.norm(f"blk.{i}.attn_q_norm.weight", n_head * head_dim)
        W.norm(f"blk.{i}.attn_k_norm.weight", n_head_kv * head_dim)
    W.mat(f"blk.{i}.attn_output.weight", (n_embd, n_head * head_dim))


def experts(W, i, n_embd, n_ff, n_expert, router_gain=2.0):
    W.norm(f"blk.{i}.ffn_norm.weight", n_embd)
    W.mat(f"blk.{i}.ffn_gate_inp.weight", (n_expert, n_embd), router_gain)
    W.mat(f"blk.{i}.ffn_gate_exps.weight", (n_expert, n_ff, n_embd))
    W.mat(f"blk.{i}.ffn_up_exps.weight", (n_expert, n_ff, n_embd))
    W.mat(f"blk.{i}.ffn_down_exps.weight", (n_expert, n_embd, n_ff))


def embed_and_head(W, n_vocab, n_embd, tied=False):
    W.add("token_embd.weight", W.rng.standard_normal((n_vocab, n_embd)).astype(np.float32))
    W.norm("output_norm.weight", n_embd)
    if not tied:
        W.mat("output.weight", (n_vocab, n_embd), 3.0)


def common_keys(w, n_layer, n_embd, n_ff, n_head, n_head_kv, n_ctx_train=4096, eps=1e-6, rope_base=10000.0):
    w.add_block_count(n_layer)
    w.add_context_length(n_ctx_train)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_freq_base(rope_base)
    w.add_layer_norm_rms_eps(eps)


# ----------------------------------------------------------------------------------------------------------------
# One builder per architecture: writes the keys llama.cpp's converter writes for that family and the tensors
# src/models/<arch>.cpp loads.
# ----------------------------------------------------------------------------------------------------------------
def build_mixtral(w, W, v, E):
    n_layer, n_head, n_head_kv, n_ff, n_expert = 2, 4, 2, E, 8
    hd = E // n_head
    common_keys(w, n_layer, E, n_ff, n_head, n_head_kv, eps=1e-5, rope_base=1e6)
    w.add_expert_count(n_expert)
    w.add_expert_used_count(2)
    w.add_rope_dimension_count(hd)
    w.add_vocab_size(len(v.tokens))
    embed_and_head(W, len(v.tokens), E)
    for i in range(n_layer):
        std_attention(W, i, E, n_head, n_head_kv, hd)
        experts(W, i, E, n_ff, n_expert)


def build_qwen2moe(w, W, v, E):
    n_layer, n_head, n_head_kv, n_expert, n_ff_exp, n_ff_sh = 2, 4, 2, 8, E // 2, E
    hd = E // n_head
    common_keys(w, n_layer, E, n_ff_sh, n_head, n_head_kv, rope_base=1e6)
    w.add_expert_count(n_expert)
    w.add_expert_used_count(4)
    w.add_expert_feed_forward_length(n_ff_exp)
    w.add_expert_shared_feed_forward_length(n_ff_sh)
    embed_and_head(W, len(v.tokens), E)
    for i in range(n_layer):
        std_attention(W, i, E, n_head, n_head_kv, hd, bias=True)
        experts(W, i, E, n_ff_exp, n_expert)
        W.vec(f"blk.{i}.ffn_gate_inp_shexp.weight", E, 1.0 / math.sqrt(E))
        W.mat(f"blk.{i}.ffn_gate_shexp.weight", (n_ff_sh, E))
        W.mat(f"blk.{i}.ffn_up_shexp.weight", (n_ff_sh, E))
        W.mat(f"blk.{i}.ffn_down_shexp.weight", (E, n_ff_sh))


def build_qwen3moe(w, W, v, E):
    # head_dim deliberately differs from n_embd / n_head, as in Qwen3-30B-A3B (2048 / 32 != 128)
    n_layer, n_head, n_head_kv, n_expert, n_ff_exp = 2, 4, 2, 8, E // 2
    hd = E // 2
    common_keys(w, n_layer, E, 3 * E, n_head, n_head_kv, rope_base=1e6)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_expert_count(n_expert)
    w.add_expert_used_count(2)
    w.add_expert_feed_forward_length(n_ff_exp)
    embed_and_head(W, len(v.tokens), E)
    for i in range(n_layer):
        std_attention(W, i, E, n_head, n_head_kv, hd, qk_norm="head")
        experts(W, i, E, n_ff_exp, n_expert)


def build_olmoe(w, W, v, E):
    n_layer, n_head, n_expert, n_ff = 2, 4, 8, E // 2
    hd = E // n_head
    common_keys(w, n_layer, E, n_ff, n_head, n_head, eps=1e-5)
    w.add_expert_count(n_expert)
    w.add_expert_used_count(2)
    embed_and_head(W, len(v.tokens), E)
    for i in range(n_layer):
        std_attention(W, i, E, n_head, n_head, hd, qk_norm="full")
        experts(W, i, E, n_ff, n_expert)


def build_deepseek2(w, W, v, E, v3: bool):
    n_layer, n_head, n_dense = 3, 4, 1
    q_lora, kv_lora, nope, rope, vdim = (48 if v3 else 0), 32, 16, 8, 16
    n_ff_exp = 32 if E < 256 else 64
    n_expert, n_used, n_ff = (16, 4, 2 * E) if v3 else (8, 2, 2 * E)
    # the converter writes num_key_value_heads = 1 (MLA is stored as MQA over the compressed latent)
    common_keys(w, n_layer, E, n_ff, n_head, 1)
    w.add_leading_dense_block_count(n_dense)
    w.add_vocab_size(len(v.tokens))
    # llama.cpp requires q_lora_rank unless n_layer marks a Lite model (26/27 layers): a 3-layer V2-Lite-style
    # model therefore writes 0, which llama.cpp reads as "no q_lora" (plain attn_q).
    w.add_q_lora_rank(q_lora)
    w.add_kv_lora_rank(kv_lora)
    w.add_key_length(kv_lora + rope)
    w.add_value_length(kv_lora)
    w.add_key_length_mla(nope + rope)
    w.add_value_length_mla(vdim)
    w.add_expert_feed_forward_length(n_ff_exp)
    w.add_expert_count(n_expert)
    w.add_expert_used_count(n_used)
    w.add_expert_shared_count(1)
    w.add_expert_weights_scale(2.5 if v3 else 1.0)
    if v3:
        w.add_expert_weights_norm(True)
        w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
        w.add_expert_group_count(4)
        w.add_expert_group_used_count(2)
    else:
        w.add_expert_gating_func(gguf.ExpertGatingFuncType.SOFTMAX)
        w.add_expert_group_count(1)
        w.add_expert_group_used_count(1)
    w.add_rope_dimension_count(rope)
    if v3:  # DeepSeek-V3's YaRN: factor 40 over 4096 original positions, mscale_all_dim 1.0
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(40.0)
        w.add_rope_scaling_orig_ctx_len(4096)
        w.add_rope_scaling_yarn_beta_fast(32.0)
        w.add_rope_scaling_yarn_beta_slow(1.0)
        w.add_rope_scaling_yarn_log_mul(0.1 * 1.0)
    embed_and_head(W, len(v.tokens), E)
    for i in range(n_layer):
        W.norm(f"blk.{i}.attn_norm.weight", E)
        if v3:
            W.mat(f"blk.{i}.attn_q_a.weight", (q_lora, E))
            W.norm(f"blk.{i}.attn_q_a_norm.weight", q_lora)
            W.mat(f"blk.{i}.attn_q_b.weight", (n_head * (nope + rope), q_lora))
        else:
            W.mat(f"blk.{i}.attn_q.weight", (n_head * (nope + rope), E))
        W.mat(f"blk.{i}.attn_kv_a_mqa.weight", (kv_lora + rope, E))
        W.norm(f"blk.{i}.attn_kv_a_norm.weight", kv_lora)
        # kv_b (n_head * (nope + vdim), kv_lora) split the way the converter does: k_b transposed per head
        kv_b = (W.rng.standard_normal((n_head, nope + vdim, kv_lora)) / math.sqrt(kv_lora)).astype(np.float32)
        W.add(f"blk.{i}.attn_k_b.weight", np.ascontiguousarray(kv_b[:, :nope, :].transpose(0, 2, 1)))
        W.add(f"blk.{i}.attn_v_b.weight", np.ascontiguousarray(kv_b[:, nope:, :]))
        W.mat(f"blk.{i}.attn_output.weight", (E, n_head * vdim))
        if i < n_dense:
            W.norm(f"blk.{i}.ffn_norm.weight", E)
            W.mat(f"blk.{i}.ffn_gate.weight", (n_ff, E))
            W.mat(f"blk.{i}.ffn_up.weight", (n_ff, E))
            W.mat(f"blk.{i}.ffn_down.weight", (E, n_ff))
        else:
            experts(W, i, E, n_ff_exp, n_expert)
            if v3:
                W.vec(f"blk.{i}.exp_probs_b.bias", n_expert, 0.05)
            W.mat(f"blk.{i}.ffn_gate_shexp.weight", (n_ff_exp, E))
            W.mat(f"blk.{i}.ffn_up_shexp.weight", (n_ff_exp, E))
            W.mat(f"blk.{i}.ffn_down_shexp.weight", (E, n_ff_exp))


def build_gpt_oss(w, W, v, E):
    # n_head * head_dim != n_embd as in gpt-oss-20b (64 * 64 vs 2880); MXFP4 experts as the converter writes them
    n_layer, n_head, n_head_kv, hd, n_expert, n_ff_exp, swa = 2, 4, 2, 32, 8, E, 16
    common_keys(w, n_layer, E, n_ff_exp, n_head, n_head_kv, eps=1e-5, rope_base=150000.0)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_expert_count(n_expert)
    w.add_expert_used_count(2)
    w.add_sliding_window(swa)
    w.add_expert_feed_forward_length(n_ff_exp)
    embed_and_head(W, len(v.tokens), E)
    for i in range(n_layer):
        std_attention(W, i, E, n_head, n_head_kv, hd, bias=True)
        W.vec(f"blk.{i}.attn_output.bias", E, 0.1)
        W.vec(f"blk.{i}.attn_sinks.weight", n_head, 1.0)
        W.norm(f"blk.{i}.post_attention_norm.weight", E)
        W.mat(f"blk.{i}.ffn_gate_inp.weight", (n_expert, E), 2.0)
        W.vec(f"blk.{i}.ffn_gate_inp.bias", n_expert, 0.5)
        for part, shape in (("gate", (n_expert, n_ff_exp, E)), ("up", (n_expert, n_ff_exp, E)),
                            ("down", (n_expert, E, n_ff_exp))):
            arr = (W.rng.standard_normal(shape) * 2.0 / math.sqrt(shape[-1])).astype(np.float32)
            W.add(f"blk.{i}.ffn_{part}_exps.weight", gguf.quants.quantize(arr, T.MXFP4), T.MXFP4)
            W.vec(f"blk.{i}.ffn_{part}_exps.bias", shape[:2], 0.1)


BUILDERS = {
    "llama": build_mixtral,
    "qwen2moe": build_qwen2moe,
    "qwen3moe": build_qwen3moe,
    "olmoe": build_olmoe,
    "deepseek2-v3": lambda w, W, v, E: build_deepseek2(w, W, v, E, True),
    "deepseek2-lite": lambda w, W, v, E: build_deepseek2(w, W, v, E, False),
    "gpt-oss": build_gpt_oss,
}
GGUF_ARCH = {"deepseek2-v3": "deepseek2", "deepseek2-lite": "deepseek2", "gpt-oss": "gpt-oss"}
VOCABS = {  # (vocab file, tokens kept, pre-tokenizer override)
    "llama": ("ggml-vocab-llama-spm.gguf", 1500, None),
    "qwen2moe": ("ggml-vocab-qwen2.gguf", 1500, None),
    "qwen3moe": ("ggml-vocab-qwen2.gguf", 1500, None),
    "olmoe": ("ggml-vocab-gpt-2.gguf", 1500, None),
    "deepseek2-v3": ("ggml-vocab-deepseek-llm.gguf", 1500, None),
    "deepseek2-lite": ("ggml-vocab-deepseek-llm.gguf", 1500, None),
    # no o200k vocab ships with llama.cpp: gpt-2's byte-level BPE with gpt-oss's "gpt-4o" pre-tokenizer
    "gpt-oss": ("ggml-vocab-gpt-2.gguf", 1500, "gpt-4o"),
}


@dataclass
class Fixture:
    name: str  # file stem
    family: str  # key of BUILDERS
    dtype: str  # F32 / F16 / BF16 (weights written by this script)
    n_embd: int = 64
    quant: str | None = None  # Q8_0 / Q4_K_M / Q6_K: llama.cpp quantises the F32 model (n_embd must be 256k)


FIXTURES = [
    Fixture("mixtral-f32", "llama", "F32"),
    Fixture("qwen2moe-f32", "qwen2moe", "F32"),
    Fixture("qwen3moe-f32", "qwen3moe", "F32"),
    Fixture("olmoe-f32", "olmoe", "F32"),
    Fixture("deepseek2-v3-f32", "deepseek2-v3", "F32"),
    Fixture("deepseek2-lite-f32", "deepseek2-lite", "F32"),
    Fixture("gpt-oss-mxfp4", "gpt-oss", "F32"),
    Fixture("qwen3moe-f16", "qwen3moe", "F16"),
    Fixture("olmoe-bf16", "olmoe", "BF16"),
    Fixture("mixtral-q8_0", "llama", "F32", 256, "Q8_0"),
    Fixture("qwen3moe-q4_k_m", "qwen3moe", "F32", 256, "Q4_K_M"),
    Fixture("deepseek2-v3-q6_k", "deepseek2-v3", "F32", 256, "Q6_K"),
]
FTYPES = {"Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
          "Q6_K": llama_cpp.LLAMA_FTYPE_MOSTLY_Q6_K}
FILE_TYPES = {"F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16,
              "BF16": gguf.LlamaFileType.MOSTLY_BF16}


def write_model(path: str, fx: Fixture, vocab: Vocab, seed: int) -> None:
    arch = GGUF_ARCH.get(fx.family, fx.family)
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"moerig-fixture-{fx.family}")
    w.add_file_type(FILE_TYPES[fx.dtype] if fx.family != "gpt-oss" else gguf.LlamaFileType.MOSTLY_MXFP4_MOE)
    W = Weights(seed, fx.dtype)
    BUILDERS[fx.family](w, W, vocab, fx.n_embd)
    write_vocab(w, vocab)
    W.write(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quantize(src: str, dst: str, quant: str) -> None:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[quant]
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({src} -> {quant}) failed with {rc}")


# ----------------------------------------------------------------------------------------------------------------
# Reference outputs from llama.cpp
# ----------------------------------------------------------------------------------------------------------------
def open_llama(path: str) -> Llama:
    return Llama(model_path=path, n_ctx=REF_CTX, n_batch=REF_CTX, n_ubatch=REF_CTX, n_threads=2, n_threads_batch=2,
                 logits_all=True, type_k=0, type_v=0, seed=1234, flash_attn=False, verbose=False)


def run_logits(llm: Llama, tokens: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(tokens)
    return np.array(llm.scores[: len(tokens)], dtype=np.float32)


def top2_margin(row: np.ndarray) -> float:
    a = np.partition(row, -2)[-2:]
    return float(abs(a[1] - a[0]))


def reference(path: str, keep_all_logits: bool) -> tuple[dict, np.ndarray]:
    llm = open_llama(path)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
    out = {"n_vocab": llm.n_vocab(), "add_bos": add_bos, "bos": int(llm.token_bos()), "eos": int(llm.token_eos()),
           "prompts": []}
    blobs = []
    offset = 0
    min_margin = float("inf")
    for idx, text in enumerate(PROMPTS):
        toks = llm.tokenize(text.encode(), add_bos=True, special=False)
        logits = run_logits(llm, toks)
        last = logits[-1]
        # greedy: argmax after every step, fed back one token at a time (the KV cache is reused as in decoding)
        seq = list(toks)
        greedy, margins = [], []
        row = last
        for _ in range(NUM_GREEDY):
            nxt = int(np.argmax(row))
            greedy.append(nxt)
            margins.append(top2_margin(row))
            seq.append(nxt)
            llm.eval([nxt])
            row = np.array(llm.scores[len(seq) - 1], dtype=np.float32)
        min_margin = min(min_margin, min(margins))
        entry = {"text": text, "tokens": [int(t) for t in toks], "last_logits_offset": offset, "greedy": greedy,
                 "greedy_min_margin": min(margins), "greedy_distinct": len(set(greedy))}
        blobs.append(last)
        offset += last.size
        if idx == 0:  # teacher forcing over prompt + greedy[:-1], one batch (logits kept where top-1 is not exact)
            tf_tokens = toks + greedy[:-1]
            tf = run_logits(llm, tf_tokens)
            entry["teacher_forced"] = {"tokens": [int(t) for t in tf_tokens], "num_positions": len(tf_tokens),
                                       "top1": [int(t) for t in np.argmax(tf, axis=1)]}
            if keep_all_logits:
                entry["teacher_forced"]["logits_offset"] = offset
                blobs.append(tf.reshape(-1))
                offset += tf.size
        out["prompts"].append(entry)
    out["greedy_min_margin"] = min_margin
    out["perplexity"] = perplexity(llm, add_bos)
    del llm
    return out, np.concatenate(blobs).astype(np.float32)


def perplexity(llm: Llama, add_bos: bool) -> dict:
    """llama.cpp's perplexity tool: tokenise with BOS, split into n_ctx chunks, put BOS first in every chunk, and
    score positions n_ctx/2 .. n_ctx-2 (each predicting the next token). ppl = exp(mean nll over all scored)."""
    toks = llm.tokenize(PPL_TEXT.encode(), add_bos=True, special=False)
    n_chunk = len(toks) // PPL_CTX  # every whole chunk, as the perplexity tool without --chunks
    if n_chunk < 2:
        raise RuntimeError(f"perplexity text gives only {len(toks)} tokens")
    first = PPL_CTX // 2
    nll_sum, count, chunk_ppl = 0.0, 0, []
    for c in range(n_chunk):
        chunk = toks[c * PPL_CTX:(c + 1) * PPL_CTX]
        if add_bos:
            chunk = [llm.token_bos()] + chunk[1:]
        logits = run_logits(llm, chunk).astype(np.float64)
        rows = logits[first:PPL_CTX - 1]
        targets = np.array(toks[c * PPL_CTX + first + 1:(c + 1) * PPL_CTX])
        mx = rows.max(axis=1, keepdims=True)
        logsm = rows - mx - np.log(np.exp(rows - mx).sum(axis=1, keepdims=True))
        nll = -logsm[np.arange(len(targets)), targets]
        nll_sum += float(nll.sum())
        count += len(targets)
        chunk_ppl.append(float(math.exp(nll.mean())))
    return {"n_ctx": PPL_CTX, "tokens": [int(t) for t in toks], "n_chunks": n_chunk, "num_scored": count,
            "ppl": math.exp(nll_sum / count), "chunk_ppl": chunk_ppl}


def nmse(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return float(((a - b) ** 2).sum() / max((b**2).sum(), 1e-30))


def make_one(fx: Fixture, out_dir: str, vocab_dir: str, tmp: str, log) -> None:
    vf, keep, pre = VOCABS[fx.family]
    vocab = trim_vocab(os.path.join(vocab_dir, vf), keep, pre)
    best = None
    for seed in range(1, 17):
        src = os.path.join(tmp, f"{fx.name}-seed{seed}.gguf")
        write_model(src, fx, vocab, seed)
        path = src
        if fx.quant:
            path = os.path.join(tmp, f"{fx.name}-seed{seed}-{fx.quant}.gguf")
            quantize(src, path, fx.quant)
        ref, blob = reference(path, fx.quant is not None or fx.dtype != "F32" or fx.family == "gpt-oss")
        distinct = min(p["greedy_distinct"] for p in ref["prompts"])
        log(f"  {fx.name} seed {seed}: min greedy margin {ref['greedy_min_margin']:.4f}, "
            f"min distinct greedy {distinct}, ppl {ref['perplexity']['ppl']:.2f}")
        # quantised models are held to teacher-forced top-1 agreement, not to exact greedy: any seed will do
        ok = fx.quant is not None or (ref["greedy_min_margin"] >= MIN_GREEDY_MARGIN and distinct >= 6)
        score = (ok, ref["greedy_min_margin"])
        if best is None or score > best[0]:
            best = (score, seed, src, path, ref, blob)
        if score[0]:
            break
    _, seed, src, path, ref, blob = best
    final = os.path.join(out_dir, fx.name + ".gguf")
    os.replace(path, final)
    ref["model"] = fx.name + ".gguf"
    ref["family"] = fx.family
    ref["arch"] = GGUF_ARCH.get(fx.family, fx.family)
    ref["weights"] = fx.quant or ("MXFP4 experts, F32 rest" if fx.family == "gpt-oss" else fx.dtype)
    ref["seed"] = seed
    ref["llama_cpp_python"] = llama_cpp.__version__
    ref["llama_cpp_system_info"] = llama_cpp.llama_print_system_info().decode(errors="replace")
    ref["reference_settings"] = {"n_ctx": REF_CTX, "n_batch": REF_CTX, "n_threads": 2, "type_k": "F32",
                                 "type_v": "F32", "flash_attn": False, "logits_all": True}
    ref["logits_file"] = fx.name + ".logits.bin"
    # gpt-oss's MXFP4 experts go through llama.cpp's quantised matmul (activations rounded to Q8_0): not exact
    exact = fx.quant is None and fx.family != "gpt-oss"
    ref["check"] = {"kind": "exact" if exact else "quantised", "ppl_rel_tol": 0.005,
                    "last_logits_nmse_max": 1e-5 if exact else 5e-3, "teacher_forced_top1_min": 0.95}
    if fx.quant:  # how far llama.cpp's own quantised logits sit from the F32 source: the scale of quant error
        src_ref, src_blob = reference(src, True)
        ref["quant_vs_f32_source"] = {
            "last_logits_nmse": [nmse(blob[p["last_logits_offset"]:p["last_logits_offset"] + ref["n_vocab"]],
                                      src_blob[p["last_logits_offset"]:p["last_logits_offset"] + ref["n_vocab"]])
                                 for p in ref["prompts"]],
            "f32_ppl": src_ref["perplexity"]["ppl"]}
    blob.tofile(os.path.join(out_dir, ref["logits_file"]))
    with open(os.path.join(out_dir, fx.name + ".json"), "w") as f:
        json.dump(ref, f, indent=1, ensure_ascii=False)
        f.write("\n")


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "data", "models"))
    ap.add_argument("--vocab-dir", default=os.environ.get("MOERIG_VOCAB_DIR", "/work/vocab"))
    ap.add_argument("--only", nargs="*", help="fixture names to (re)make")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    llama_cpp.llama_backend_init()
    names = set(args.only or [])
    with tempfile.TemporaryDirectory() as tmp:
        for fx in FIXTURES:
            if names and fx.name not in names:
                continue
            print(f"{fx.name}:", flush=True)
            make_one(fx, args.out, args.vocab_dir, tmp, lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
