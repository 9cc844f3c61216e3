// Model accounting: the byte and parameter account of every tensor of a model, from a catalog spec
// under a quantisation mix, from a GGUF header (exact types) or from an HF config.json. Entry point for
// the planner: load_model("deepseek-v3", parse_quant_mix("Q4_K_M")).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "sharding/model_spec.h"
#include "sharding/quant_mix.h"

namespace moerig::formats {
class GgufModel;
}

namespace moerig::sharding {

/// Lists every tensor the spec implies (GGUF names and shapes, llama.cpp conventions) typed by `mix`,
/// and computes the totals.
ModelAccount account_model(const ModelSpec& spec, const QuantMix& mix);

/// Reads the hyperparameters of a GGUF model (llama+experts, qwen2moe, qwen3moe, olmoe, deepseek2, gpt-oss).
ModelSpec spec_from_gguf(const formats::GgufModel& gguf);
/// Exact account of a GGUF file's tensor table: real types and bytes; merged experts split by ne[2].
ModelAccount account_gguf(const formats::GgufModel& gguf);
/// Opens a GGUF model (every part of a split model) and accounts it; throws FormatError on a bad file.
ModelAccount account_gguf_file(const std::filesystem::path& path);

/// Totals (layers, params, bytes) of an account whose spec and tensors are filled; used by both paths.
void finish_account(ModelAccount& account);

/// One entry point for every source:
///  - "*.gguf": exact GGUF account (a quant mix is refused: the file's types are fixed);
///  - "*.json" or a directory with config.json: HF import (+ model.safetensors.index.json beside it);
///  - "*.yaml": a model file in the catalog format;
///  - anything else: a catalog name (ConfigError with close matches when unknown).
/// Without a mix, catalog and HF models use native_quant_mix(spec).
ModelAccount load_model(const std::string& name_or_path, std::optional<QuantMix> mix = std::nullopt);

}  // namespace moerig::sharding
