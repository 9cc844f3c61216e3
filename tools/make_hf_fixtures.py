#!/usr/bin/env python3
"""Makes the tiny random-weight Hugging Face checkpoints of tests/data/hf and records transformers' outputs.

Pinned versions (tools/install-deps.sh --hf-fixtures installs them):
  torch 1.13.1 (Debian's python3-torch, CPU only; PyPI's torch pulls GBs of CUDA wheels)
  transformers 4.51.3 (the newest release that still imports with torch < 2.1; it has mixtral, qwen2_moe,
  qwen3_moe, olmoe and deepseek_v3, but not deepseek_v2, which arrived after transformers required torch >= 2.1)
Run with Debian's interpreter in a venv that sees its torch:
  python3 -m venv --system-site-packages /opt/hfvenv && /opt/hfvenv/bin/pip install transformers==4.51.3
  /opt/hfvenv/bin/python tools/make_hf_fixtures.py [--out tests/data/hf] [--only NAME]

transformers 4.51 imports a few torch >= 2 names at module level (torch.distributed.tensor, torch.compiler,
float8 dtypes) that the models used here never touch; `_torch_compat` stubs them before the import. The
reference never goes through generate() (it touches FSDP code that torch 1.13 cannot import): greedy decoding
recomputes the whole sequence with the model's forward() each step, which is what generate() computes.

Per fixture <name>/: config.json, generation_config.json, model.safetensors (save_pretrained), tokenizer.json
(a byte-level BPE over the 256 ids, see write_byte_tokenizer), reference.json
(prompts, transformers' 32-token greedy continuations, versions) and logits.bin (float32 little-endian,
[num_prompts][vocab]: the last position's logits of each prompt). Weights are re-drawn with scales that give
decisive routing and non-flat logits (transformers' init, std 0.02, makes every logit ~0 and greedy decoding a
tie-break). The BF16 fixture's reference runs in float32 over the BF16-rounded weights (the engine's own
arithmetic), and its logits_bf16.bin records transformers' all-BF16 forward for the looser bound documented in
tests/integration/test_hf_parity.cpp.
"""
import argparse
import json
import math
import os
import sys
import types


def _torch_compat():
    import torch

    sys.modules.setdefault("torch.distributed.tensor", types.ModuleType("torch.distributed.tensor"))
    if not hasattr(torch, "compiler"):
        compiler = types.ModuleType("torch.compiler")

        def disable(fn=None, recursive=True):
            return fn if fn is not None else (lambda f: f)

        compiler.disable = disable
        compiler.is_compiling = lambda: False
        compiler.is_exporting = lambda: False
        torch.compiler = compiler
        sys.modules["torch.compiler"] = compiler
    for name in ("float8_e4m3fn", "float8_e5m2", "uint16", "uint32", "uint64"):
        if not hasattr(torch, name):  # distinct placeholders: never used as real dtypes here
            setattr(torch, name, type("missing_dtype_" + name, (), {})())


_torch_compat()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

PINNED_TRANSFORMERS = "4.51.3"
VOCAB = 256
# The last prompt is the text "Hello, MoE world" through the byte tokenizer of write_byte_tokenizer (id = byte).
PROMPTS = [[1, 17, 42, 5, 99, 3, 64, 12], [7, 200, 31, 150, 9, 77], [250, 2, 128, 64, 32, 16, 8, 4, 2, 1, 0, 33],
           list(b"Hello, MoE world")]
GREEDY_TOKENS = 32


def fixtures():
    T = transformers
    common = dict(vocab_size=VOCAB, hidden_size=64, num_attention_heads=4, max_position_embeddings=128,
                  rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)
    return {
        "mixtral-f32": (T.MixtralConfig(**common, intermediate_size=32, num_hidden_layers=2, num_key_value_heads=2,
                                        num_local_experts=4, num_experts_per_tok=2, sliding_window=None,
                                        rope_theta=10000.0, tie_word_embeddings=False), torch.float32),
        "qwen2moe-bf16": (T.Qwen2MoeConfig(**common, intermediate_size=64, moe_intermediate_size=32,
                                           shared_expert_intermediate_size=48, num_hidden_layers=2,
                                           num_key_value_heads=2, num_experts=8, num_experts_per_tok=2,
                                           norm_topk_prob=False, use_sliding_window=False, rope_theta=1000000.0,
                                           tie_word_embeddings=True), torch.bfloat16),
        "qwen3moe-f32": (T.Qwen3MoeConfig(**common, intermediate_size=64, moe_intermediate_size=32, head_dim=24,
                                          num_hidden_layers=2, num_key_value_heads=2, num_experts=8,
                                          num_experts_per_tok=2, norm_topk_prob=True, use_sliding_window=False,
                                          rope_theta=1000000.0, tie_word_embeddings=False,
                                          rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                                        "original_max_position_embeddings": 32}), torch.float32),
        "olmoe-f32": (T.OlmoeConfig(**common, intermediate_size=32, num_hidden_layers=2, num_key_value_heads=4,
                                    num_experts=8, num_experts_per_tok=2, norm_topk_prob=False,
                                    tie_word_embeddings=False), torch.float32),
        "deepseekv3-f32": (T.DeepseekV3Config(**common, intermediate_size=96, moe_intermediate_size=32,
                                              num_hidden_layers=3, num_key_value_heads=4, first_k_dense_replace=1,
                                              n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2,
                                              n_group=4, topk_group=2, routed_scaling_factor=2.5, norm_topk_prob=True,
                                              q_lora_rank=48, kv_lora_rank=32, qk_nope_head_dim=16,
                                              qk_rope_head_dim=8, v_head_dim=16, rope_interleave=True,
                                              tie_word_embeddings=False,
                                              rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                                            "original_max_position_embeddings": 32, "beta_fast": 32.0,
                                                            "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0}),
                           torch.float32),
    }


def model_class(cfg):
    return {
        "mixtral": transformers.MixtralForCausalLM,
        "qwen2_moe": transformers.Qwen2MoeForCausalLM,
        "qwen3_moe": transformers.Qwen3MoeForCausalLM,
        "olmoe": transformers.OlmoeForCausalLM,
        "deepseek_v3": transformers.DeepseekV3ForCausalLM,
    }[cfg.model_type]


def redraw(model, gen):
    """Weights with unit-scale activations: matrices N(0, 1/fan_in), routers sharper, norms near 1."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                base = 1.0 if "norm" in name else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                std = 1.0 / math.sqrt(p.shape[-1])
                if name.endswith("mlp.gate.weight") or name.endswith("block_sparse_moe.gate.weight"):
                    std *= 3.0
                p.copy_(std * torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.05 * torch.randn(b.shape, generator=gen))


@torch.no_grad()
def last_logits(model, ids):
    return model(torch.tensor([ids]), use_cache=False).logits[0, -1].float()


@torch.no_grad()
def greedy(model, ids, n):
    seq = list(ids)
    out = []
    for _ in range(n):
        tok = int(torch.argmax(last_logits(model, seq)))
        out.append(tok)
        seq.append(tok)
    return out


def write_byte_tokenizer(d):
    """A byte-level BPE tokenizer.json over the 256-token vocabulary (<unk>, <s>, </s>, then bytes 3..255, no
    merges), so that `moerig run -m DIR -p TEXT` has a tokenizer to read; the references use token ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = {}
    for b in range(256):  # GPT-2's byte -> printable character map, as ByteLevel uses it
        printable = (33 <= b <= 126) or (161 <= b <= 172) or (174 <= b <= 255)
        alphabet[b] = chr(b) if printable else None
    n = 0
    for b in range(256):
        if alphabet[b] is None:
            alphabet[b] = chr(256 + n)
            n += 1
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(3, 256):
        vocab[alphabet[b]] = len(vocab)
    assert len(vocab) == VOCAB
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.save(os.path.join(d, "tokenizer.json"))


def make(name, cfg, dtype, out_dir):
    seed = sum(map(ord, name))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = model_class(cfg)(cfg).eval()
    redraw(model, gen)
    if dtype != torch.float32:
        model = model.to(dtype)
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d, safe_serialization=True)
    for extra in os.listdir(d):
        if extra not in ("config.json", "generation_config.json", "model.safetensors"):
            os.remove(os.path.join(d, extra))
    write_byte_tokenizer(d)
    # The reference computes with the weights exactly as saved.
    saved = load_file(os.path.join(d, "model.safetensors"))
    state = model.state_dict()
    for k, v in saved.items():
        assert torch.equal(state[k], v), f"{name}: saved tensor {k} differs from the model's"
    ref_model = model.float() if dtype != torch.float32 else model
    logits = np.stack([last_logits(ref_model, p).numpy() for p in PROMPTS]).astype("<f4")
    logits.tofile(os.path.join(d, "logits.bin"))
    continuations = [greedy(ref_model, p, GREEDY_TOKENS) for p in PROMPTS]
    ref = {
        "model_type": cfg.model_type,
        "weights_dtype": str(dtype).replace("torch.", ""),
        "reference_compute": "float32",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "vocab": cfg.vocab_size,
        "prompts": PROMPTS,
        "greedy": continuations,
        "logits_file": "logits.bin",
    }
    if dtype != torch.float32:
        model_lp = model_class(cfg)(cfg).eval()
        model_lp.load_state_dict(ref_model.state_dict())
        model_lp = model_lp.to(dtype)
        lp = np.stack([last_logits(model_lp, p).numpy() for p in PROMPTS]).astype("<f4")
        lp.tofile(os.path.join(d, "logits_bf16.bin"))
        ref["logits_lowp_file"] = "logits_bf16.bin"
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
    print(f"{name}: {size / 1024:.0f} KiB, greedy[0] = {continuations[0][:8]}...")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "hf"))
    ap.add_argument("--only", help="make just this fixture")
    args = ap.parse_args()
    if transformers.__version__ != PINNED_TRANSFORMERS:
        print(f"warning: transformers {transformers.__version__}, the fixtures were made with {PINNED_TRANSFORMERS}",
              file=sys.stderr)
    torch.set_num_threads(1)
    for name, (cfg, dtype) in fixtures().items():
        if args.only and name != args.only:
            continue
        make(name, cfg, dtype, args.out)


if __name__ == "__main__":
    main()
