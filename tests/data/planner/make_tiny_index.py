#!/usr/bin/env python3
# Writes tiny-deepseek/model.safetensors.index.json: the weight map of a toy DeepSeek-V3-shaped model with
# 2 blocks plus one MTP block (layer 2) that config.json does not declare; the importer must find it.
# Run from this folder: python3 make_tiny_index.py
import json

names = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]
for l in range(3):
    p = f"model.layers.{l}."
    names += [p + n for n in ["input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight",
                              "self_attn.kv_a_proj_with_mqa.weight", "self_attn.kv_a_layernorm.weight",
                              "self_attn.kv_b_proj.weight", "self_attn.o_proj.weight"]]
    if l == 0:
        names += [p + f"mlp.{m}.weight" for m in ["gate_proj", "up_proj", "down_proj"]]
    else:
        names += [p + "mlp.gate.weight", p + "mlp.gate.e_score_correction_bias"]
        names += [p + f"mlp.experts.{e}.{m}.weight" for e in range(4) for m in ["gate_proj", "up_proj", "down_proj"]]
        names += [p + f"mlp.shared_experts.{m}.weight" for m in ["gate_proj", "up_proj", "down_proj"]]
    if l == 2:
        names += [p + n for n in ["enorm.weight", "hnorm.weight", "eh_proj.weight", "shared_head.norm.weight"]]
index = {"metadata": {"total_size": 0}, "weight_map": {n: "model-00001-of-00001.safetensors" for n in names}}
with open("tiny-deepseek/model.safetensors.index.json", "w") as f:
    json.dump(index, f, indent=1)
