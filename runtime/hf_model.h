// Hugging Face checkpoints (config.json + *.safetensors, single file or sharded) imported for the CPU engine:
// config.json becomes GGUF metadata under llama.cpp's keys and the safetensors tensors are renamed to GGUF
// names (shape reversed: safetensors [out, in] row-major == GGUF ne {in, out}), with their data used in place
// from the mapping. ModelHParams::from_gguf and ModelWeights::bind then run unchanged; the conventions the
// GGUF converter rewrites (unpermuted q/k, the config's norm_topk_prob) travel as moerig.* keys.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace moerig::formats {
class GgufModel;
}

namespace moerig::runtime {

/// Comma-separated list of supported config.json model_type values, for error messages.
const char* supported_hf_model_types();

/// Whether `path` names a Hugging Face checkpoint: a directory holding config.json, or a config.json file.
bool is_hf_checkpoint(const std::filesystem::path& path);

struct HfCheckpoint {
    std::unique_ptr<formats::GgufModel> model;  // in-memory GGUF view over the safetensors mappings
    std::filesystem::path dir;
    std::filesystem::path config_path;
    std::string model_type;
    std::vector<int32_t> eog_ids;                         // eos_token_id of config.json and generation_config.json
    std::optional<std::filesystem::path> tokenizer_json;  // when the directory has one
};

/// Reads config.json and the safetensors files beside it. Throws ConfigError naming config.json and the field
/// for missing or malformed keys, UnsupportedError ("not supported yet") for model types and weight formats the
/// engine cannot run (FP8 block scales, MXFP4), and FormatError naming the file and tensor for bad tensors.
HfCheckpoint import_hf_checkpoint(const std::filesystem::path& path);

}  // namespace moerig::runtime
