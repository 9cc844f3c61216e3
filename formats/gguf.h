// GGUF v2/v3 reader: memory-maps a model file (or every part of a split model), parses the metadata
// and tensor table with bounds checks on every read, and hands out tensor data in place.
// The planner reads only the header; pages of weights are touched only when a tensor's data is used.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "formats/mapped_file.h"
#include "kernels/dtype.h"

namespace moerig::formats {

/// GGUF metadata value types (the u32 on the wire).
enum class GgufType : uint32_t {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    BOOL = 7,
    STRING = 8,
    ARRAY = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
};
std::string_view gguf_type_name(GgufType t);

/// One metadata value. Integers are widened; arrays hold their elements.
struct GgufValue {
    GgufType type = GgufType::U8;
    GgufType elem_type = GgufType::U8;  // for ARRAY
    uint64_t u = 0;                     // unsigned integers and bool
    int64_t i = 0;                      // signed integers (also set for unsigned that fit)
    double f = 0;                       // floats
    std::string s;                      // STRING
    std::vector<GgufValue> arr;         // ARRAY

    bool is_integer() const;
    bool is_float() const { return type == GgufType::F32 || type == GgufType::F64; }
};

/// One entry of the tensor table.
struct GgufTensor {
    std::string name;
    std::vector<uint64_t> dims;  // ne[0] innermost (row length), up to 4
    DType type = DType::F32;
    uint64_t offset = 0;  // from the data section start of its file
    uint64_t num_bytes = 0;
    uint32_t file_idx = 0;          // which split file holds it
    const uint8_t* data = nullptr;  // in the mapping

    uint64_t num_elems() const;
    uint64_t row_elems() const { return dims.empty() ? 1 : dims[0]; }
    uint64_t num_rows() const { return dims.empty() ? 1 : num_elems() / dims[0]; }
};

/// One mapped GGUF file.
class GgufFile : public FileImage {
  public:
    /// Maps and parses path; throws FormatError naming the file, the field and the byte offset.
    explicit GgufFile(const std::filesystem::path& path) : FileImage(path) { parse(); }
    /// Parses an in-memory image (fuzzing, tests); name is used in messages. The bytes must outlive this.
    GgufFile(const uint8_t* bytes, size_t size, std::string name) : FileImage(bytes, size, std::move(name)) { parse(); }

    uint32_t version() const { return version_; }
    uint64_t data_offset() const { return data_offset_; }
    uint32_t alignment() const { return alignment_; }
    const std::map<std::string, GgufValue>& metadata() const { return kv_; }
    const std::vector<std::string>& metadata_order() const { return kv_order_; }
    std::vector<GgufTensor>& tensors() { return tensors_; }
    const std::vector<GgufTensor>& tensors() const { return tensors_; }

  private:
    void parse();

    uint32_t version_ = 0;
    uint32_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    std::map<std::string, GgufValue> kv_;
    std::vector<std::string> kv_order_;
    std::vector<GgufTensor> tensors_;
};

/// A whole model: the first file plus, for `name-00001-of-0000N.gguf`, every other part.
/// Metadata comes from the first part; tensors from all parts.
class GgufModel {
  public:
    explicit GgufModel(const std::filesystem::path& path);
    /// A model assembled in memory from another source (a Hugging Face checkpoint imported under GGUF names):
    /// `path` is used in messages, tensor data stays wherever `keep_alive` (e.g. the safetensors mappings)
    /// keeps it, and `describe` gives a tensor's name in the source's terms for error messages.
    GgufModel(std::string path, std::map<std::string, GgufValue> metadata, std::vector<GgufTensor> tensors,
              std::shared_ptr<const void> keep_alive, std::function<std::string(const std::string&)> describe);

    const std::string& path() const { return files_.empty() ? path_ : files_.front()->path(); }
    /// The tensor's name as the source spells it (the GGUF name for GGUF files).
    std::string describe_tensor(const std::string& name) const { return describe_ ? describe_(name) : name; }
    const GgufFile& file(size_t idx) const { return *files_[idx]; }
    size_t num_files() const { return files_.size(); }
    const std::map<std::string, GgufValue>& metadata() const {
        return files_.empty() ? metadata_ : files_.front()->metadata();
    }
    const std::vector<GgufTensor>& tensors() const { return tensors_; }

    const GgufValue* find(const std::string& key) const;
    const GgufTensor* find_tensor(const std::string& name) const;
    const GgufTensor& tensor(const std::string& name) const;  // throws FormatError when absent

    // Typed getters: throw FormatError naming the file and key when the key is missing or of the wrong type.
    std::string get_string(const std::string& key) const;
    std::optional<std::string> get_string_opt(const std::string& key) const;
    uint64_t get_u64(const std::string& key) const;
    std::optional<uint64_t> get_u64_opt(const std::string& key) const;
    double get_f64(const std::string& key) const;
    std::optional<double> get_f64_opt(const std::string& key) const;
    std::optional<bool> get_bool_opt(const std::string& key) const;
    std::vector<std::string> get_strings(const std::string& key) const;
    std::vector<int64_t> get_ints(const std::string& key) const;
    std::vector<double> get_floats(const std::string& key) const;

    /// `general.architecture`, e.g. "qwen3moe".
    std::string architecture() const { return get_string("general.architecture"); }
    uint64_t total_tensor_bytes() const;

  private:
    std::vector<std::unique_ptr<GgufFile>> files_;  // empty for an in-memory model
    std::vector<GgufTensor> tensors_;
    std::map<std::string, size_t> tensor_idx_;
    // In-memory models only.
    std::string path_;
    std::map<std::string, GgufValue> metadata_;
    std::shared_ptr<const void> keep_alive_;
    std::function<std::string(const std::string&)> describe_;
};

}  // namespace moerig::formats
