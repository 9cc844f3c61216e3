// safetensors reader: memory-maps a checkpoint (one file, or every shard named by
// model.safetensors.index.json), parses the JSON header with bounds checks on every tensor, and hands out
// tensor data in place. Hugging Face checkpoints (BF16/F16/F32) load; FP8 and MXFP4 blocks are recognised.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "formats/mapped_file.h"
#include "kernels/dtype.h"

namespace moerig::formats {

/// Element types of the safetensors format (the "dtype" strings of the header).
enum class StDType {
    BOOL,
    U8,
    I8,
    F8_E4M3,
    F8_E5M2,
    F8_E8M0,
    U16,
    I16,
    F16,
    BF16,
    U32,
    I32,
    F32,
    U64,
    I64,
    F64,
    F4,  // packed FP4 (two per byte)
};
std::string_view st_dtype_name(StDType t);
/// Bits per element (4 for F4).
uint32_t st_dtype_bits(StDType t);

/// One tensor of the header.
struct StTensor {
    std::string name;
    StDType dtype = StDType::F32;
    std::vector<uint64_t> shape;  // outermost first, as in PyTorch
    uint64_t offset = 0;          // from the start of its file's data section
    uint64_t num_bytes = 0;
    uint32_t file_idx = 0;          // which shard holds it
    const uint8_t* data = nullptr;  // in the mapping

    uint64_t num_elems() const;
};

/// One mapped .safetensors file.
class SafetensorsFile : public FileImage {
  public:
    /// Maps and parses path; throws FormatError naming the file, the field and the byte offset.
    explicit SafetensorsFile(const std::filesystem::path& path) : FileImage(path) { parse(); }
    /// Parses an in-memory image (fuzzing, tests); name is used in messages. The bytes must outlive this.
    SafetensorsFile(const uint8_t* bytes, size_t size, std::string name) : FileImage(bytes, size, std::move(name)) {
        parse();
    }

    /// First byte of the data section (8 + header length).
    uint64_t data_offset() const { return data_offset_; }
    /// The header's "__metadata__" string map (e.g. {"format": "pt"}).
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    /// Tensors in data order.
    const std::vector<StTensor>& tensors() const { return tensors_; }
    const StTensor* find(std::string_view name) const;

  private:
    void parse();

    uint64_t data_offset_ = 0;
    std::map<std::string, std::string> metadata_;
    std::vector<StTensor> tensors_;
};

/// A whole checkpoint: a .safetensors file, a model.safetensors.index.json (every shard it names), or a
/// directory holding either.
class SafetensorsModel {
  public:
    explicit SafetensorsModel(const std::filesystem::path& path);

    size_t num_files() const { return files_.size(); }
    const SafetensorsFile& file(size_t idx) const { return *files_[idx]; }
    const std::vector<StTensor>& tensors() const { return tensors_; }
    const StTensor* find(std::string_view name) const;
    const StTensor& tensor(std::string_view name) const;  // throws FormatError when absent
    uint64_t total_tensor_bytes() const;

  private:
    void add_file(const std::filesystem::path& path);

    std::string path_;
    std::vector<std::unique_ptr<SafetensorsFile>> files_;
    std::vector<StTensor> tensors_;
    std::map<std::string, size_t, std::less<>> tensor_idx_;
};

/// The moerig type a tensor computes in: F32, F16, BF16 (and F64/I8/I16/I32/I64 as plain data). Throws
/// UnsupportedError ("not supported yet") for FP8 weights (DeepSeek-V3's block-scaled F8_E4M3 and their
/// scales), MXFP4 blocks (gpt-oss "_blocks"/"_scales") and the other types.
DType require_supported(const StTensor& tensor, const std::string& source);

}  // namespace moerig::formats
