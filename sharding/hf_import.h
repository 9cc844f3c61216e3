// Hugging Face import: a ModelSpec from config.json (mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v2,
// deepseek_v3, gpt_oss), refined by model.safetensors.index.json when present (MTP layers, biases,
// q/k norms, tied embeddings: whatever tensors actually exist).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "sharding/model_spec.h"

namespace moerig::sharding {

/// Reads config.json (a file, or a directory holding one); uses model.safetensors.index.json beside it
/// when present. ConfigError naming the file and field on missing/ill-typed fields or unknown model_type.
ModelSpec load_hf_config(const std::filesystem::path& config_path);
/// Same from text; `index_json` is the safetensors index text, if any. `label` names the input in errors.
ModelSpec parse_hf_config(const std::string& config_json, const std::optional<std::string>& index_json,
                          const std::string& label);

}  // namespace moerig::sharding
