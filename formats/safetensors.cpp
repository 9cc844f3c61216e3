// safetensors parsing: u64 header length, JSON header (nlohmann), data section. Every tensor's dtype, shape
// and byte range is checked against the file before any pointer into the mapping is handed out.
#include "formats/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "kernels/error.h"

namespace moerig::formats {
namespace {

// The format's own limit on the header, which also bounds what a corrupt length can make us parse.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DTypeInfo {
    StDType type;
    std::string_view name;
    uint32_t bits;
};
constexpr DTypeInfo kDTypes[] = {
    {StDType::BOOL, "BOOL", 8},       {StDType::U8, "U8", 8},           {StDType::I8, "I8", 8},
    {StDType::F8_E4M3, "F8_E4M3", 8}, {StDType::F8_E5M2, "F8_E5M2", 8}, {StDType::F8_E8M0, "F8_E8M0", 8},
    {StDType::U16, "U16", 16},        {StDType::I16, "I16", 16},        {StDType::F16, "F16", 16},
    {StDType::BF16, "BF16", 16},      {StDType::U32, "U32", 32},        {StDType::I32, "I32", 32},
    {StDType::F32, "F32", 32},        {StDType::U64, "U64", 64},        {StDType::I64, "I64", 64},
    {StDType::F64, "F64", 64},        {StDType::F4, "F4", 4},
};

const DTypeInfo* dtype_by_name(std::string_view name) {
    for (const auto& d : kDTypes)
        if (d.name == name) return &d;
    return nullptr;
}

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

std::string_view st_dtype_name(StDType t) {
    for (const auto& d : kDTypes)
        if (d.type == t) return d.name;
    return "?";
}

uint32_t st_dtype_bits(StDType t) {
    for (const auto& d : kDTypes)
        if (d.type == t) return d.bits;
    return 0;
}

uint64_t StTensor::num_elems() const {
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;
    return n;
}

const StTensor* SafetensorsFile::find(std::string_view name) const {
    for (const auto& t : tensors_)
        if (t.name == name) return &t;
    return nullptr;
}

void SafetensorsFile::parse() {
    MOERIG_CHECK(size_ >= 8, FormatError,
                 "{}: file ends at offset {} while reading the header length (8 bytes needed): truncated", path_,
                 size_);
    uint64_t header_len = 0;
    std::memcpy(&header_len, bytes_, 8);
    MOERIG_CHECK(header_len <= kMaxHeaderBytes, FormatError,
                 "{}: header length {} at offset 0 exceeds the format's limit of {} bytes (not a safetensors file?)",
                 path_, header_len, kMaxHeaderBytes);
    MOERIG_CHECK(header_len <= size_ - 8, FormatError,
                 "{}: header length {} at offset 0 runs past the end of the file ({} bytes): truncated", path_,
                 header_len, size_);
    MOERIG_CHECK(header_len >= 2 && bytes_[8] == '{', FormatError,
                 "{}: header at offset 8 should be a JSON object starting with '{{'", path_);
    data_offset_ = 8 + header_len;
    const uint64_t data_size = size_ - data_offset_;

    nlohmann::json header;
    try {
        header = nlohmann::json::parse(bytes_ + 8, bytes_ + 8 + header_len);
    } catch (const nlohmann::json::parse_error& e) {
        MOERIG_THROW(FormatError, "{}: header JSON is malformed at offset {}: {}", path_, 8 + e.byte, e.what());
    } catch (const nlohmann::json::exception& e) {  // e.g. a number too large for any JSON number type
        MOERIG_THROW(FormatError, "{}: header JSON (offset 8) is invalid: {}", path_, e.what());
    }
    MOERIG_CHECK(header.is_object(), FormatError, "{}: header at offset 8 should be a JSON object", path_);

    for (const auto& item : header.items()) {
        const std::string& name = item.key();
        const nlohmann::json& entry = item.value();
        if (name == "__metadata__") {
            MOERIG_CHECK(entry.is_object(), FormatError, "{}: header field '__metadata__' should be an object", path_);
            for (const auto& [k, v] : entry.items()) {
                MOERIG_CHECK(v.is_string(), FormatError, "{}: header field '__metadata__.{}' should be a string", path_,
                             k);
                metadata_[k] = v.get<std::string>();
            }
            continue;
        }
        auto field = [&](const char* key) -> const nlohmann::json& {
            MOERIG_CHECK(entry.is_object() && entry.contains(key), FormatError,
                         "{}: tensor '{}' in the header (offset 8..{}) has no field '{}'", path_, name, data_offset_,
                         key);
            return entry.at(key);
        };
        StTensor t;
        t.name = name;
        const auto& dtype = field("dtype");
        MOERIG_CHECK(dtype.is_string(), FormatError, "{}: tensor '{}' field 'dtype' should be a string", path_, name);
        const DTypeInfo* info = dtype_by_name(dtype.get<std::string>());
        MOERIG_CHECK(info != nullptr, FormatError,
                     "{}: tensor '{}' field 'dtype' is '{}', which is not a safetensors dtype", path_, name,
                     dtype.get<std::string>());
        t.dtype = info->type;

        const auto& shape = field("shape");
        MOERIG_CHECK(shape.is_array() && shape.size() <= 8, FormatError,
                     "{}: tensor '{}' field 'shape' should be an array of at most 8 dimensions", path_, name);
        uint64_t num_bits = info->bits;
        for (const auto& d : shape) {
            MOERIG_CHECK(d.is_number_unsigned(), FormatError,
                         "{}: tensor '{}' field 'shape' holds {}, expected non-negative integers", path_, name,
                         d.dump());
            const uint64_t dim = d.get<uint64_t>();
            MOERIG_CHECK(!__builtin_mul_overflow(num_bits, dim, &num_bits), FormatError,
                         "{}: tensor '{}' field 'shape' {} overflows 64 bits", path_, name, shape.dump());
            t.shape.push_back(dim);
        }
        MOERIG_CHECK(num_bits % 8 == 0, FormatError, "{}: tensor '{}' of {} has an odd number of 4-bit elements", path_,
                     name, info->name);

        const auto& offs = field("data_offsets");
        MOERIG_CHECK(
            offs.is_array() && offs.size() == 2 && offs[0].is_number_unsigned() && offs[1].is_number_unsigned(),
            FormatError, "{}: tensor '{}' field 'data_offsets' should be [begin, end], got {}", path_, name,
            offs.dump());
        const uint64_t begin = offs[0].get<uint64_t>();
        const uint64_t end = offs[1].get<uint64_t>();
        MOERIG_CHECK(begin <= end, FormatError, "{}: tensor '{}' field 'data_offsets' [{}, {}] ends before it begins",
                     path_, name, begin, end);
        MOERIG_CHECK(end <= data_size, FormatError,
                     "{}: tensor '{}' field 'data_offsets' [{}, {}] runs past the data section (file offset {} > "
                     "file size {}): truncated",
                     path_, name, begin, end, data_offset_ + end, size_);
        MOERIG_CHECK(end - begin == num_bits / 8, FormatError,
                     "{}: tensor '{}' field 'data_offsets' [{}, {}] spans {} bytes but {} {} needs {}", path_, name,
                     begin, end, end - begin, info->name, shape.dump(), num_bits / 8);
        t.offset = begin;
        t.num_bytes = end - begin;
        t.data = bytes_ + data_offset_ + begin;
        tensors_.push_back(std::move(t));
    }

    std::sort(tensors_.begin(), tensors_.end(), [](const StTensor& a, const StTensor& b) {
        return a.offset != b.offset ? a.offset < b.offset : a.num_bytes < b.num_bytes;
    });
    for (size_t i = 1; i < tensors_.size(); ++i) {
        const StTensor& prev = tensors_[i - 1];
        const StTensor& cur = tensors_[i];
        MOERIG_CHECK(cur.offset >= prev.offset + prev.num_bytes, FormatError,
                     "{}: tensor '{}' (data offsets {}..{}) overlaps tensor '{}' (data offsets {}..{})", path_,
                     cur.name, cur.offset, cur.offset + cur.num_bytes, prev.name, prev.offset,
                     prev.offset + prev.num_bytes);
    }
}

SafetensorsModel::SafetensorsModel(const std::filesystem::path& path) : path_(path.string()) {
    namespace fs = std::filesystem;
    fs::path index = path;
    if (fs::is_directory(path)) {
        if (fs::exists(path / "model.safetensors.index.json"))
            index = path / "model.safetensors.index.json";
        else if (fs::exists(path / "model.safetensors"))
            index = path / "model.safetensors";
        else
            MOERIG_THROW(FormatError, "{}: directory holds neither model.safetensors nor model.safetensors.index.json",
                         path_);
    }
    if (index.extension() != ".json") {
        add_file(index);
        return;
    }
    const std::string index_name = index.string();
    std::ifstream in(index);
    MOERIG_CHECK(in.good(), FormatError, "{}: cannot open", index_name);
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::parse_error& e) {
        MOERIG_THROW(FormatError, "{}: malformed JSON at offset {}: {}", index_name, e.byte, e.what());
    } catch (const nlohmann::json::exception& e) {
        MOERIG_THROW(FormatError, "{}: invalid JSON: {}", index_name, e.what());
    }
    MOERIG_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), FormatError,
                 "{}: field 'weight_map' is missing or not an object", index_name);
    std::vector<std::string> shards;
    for (const auto& [name, shard] : j["weight_map"].items()) {
        MOERIG_CHECK(shard.is_string(), FormatError, "{}: weight_map['{}'] should be a file name", index_name, name);
        const std::string s = shard.get<std::string>();
        MOERIG_CHECK(!s.empty() && s.find('/') == std::string::npos && s != "..", FormatError,
                     "{}: weight_map['{}'] = '{}' should name a file beside the index", index_name, name, s);
        if (std::find(shards.begin(), shards.end(), s) == shards.end()) shards.push_back(s);
    }
    std::sort(shards.begin(), shards.end());
    for (const auto& s : shards) add_file(index.parent_path() / s);
    for (const auto& [name, shard] : j["weight_map"].items()) {
        const StTensor* t = find(name);
        MOERIG_CHECK(
            t != nullptr && files_[t->file_idx]->path() == (index.parent_path() / shard.get<std::string>()).string(),
            FormatError, "{}: weight_map says tensor '{}' is in {}, but that file does not hold it", index_name, name,
            shard.get<std::string>());
    }
}

void SafetensorsModel::add_file(const std::filesystem::path& path) {
    auto file = std::make_unique<SafetensorsFile>(path);
    const auto file_idx = static_cast<uint32_t>(files_.size());
    for (StTensor t : file->tensors()) {
        t.file_idx = file_idx;
        MOERIG_CHECK(tensor_idx_.find(t.name) == tensor_idx_.end(), FormatError, "{}: tensor '{}' is also in {}",
                     file->path(), t.name, files_[tensors_[tensor_idx_.find(t.name)->second].file_idx]->path());
        tensor_idx_.emplace(t.name, tensors_.size());
        tensors_.push_back(std::move(t));
    }
    files_.push_back(std::move(file));
}

const StTensor* SafetensorsModel::find(std::string_view name) const {
    auto it = tensor_idx_.find(name);
    return it == tensor_idx_.end() ? nullptr : &tensors_[it->second];
}

const StTensor& SafetensorsModel::tensor(std::string_view name) const {
    const StTensor* t = find(name);
    MOERIG_CHECK(t != nullptr, FormatError, "{}: tensor '{}' is missing", path_, name);
    return *t;
}

uint64_t SafetensorsModel::total_tensor_bytes() const {
    uint64_t n = 0;
    for (const auto& t : tensors_) n += t.num_bytes;
    return n;
}

DType require_supported(const StTensor& t, const std::string& source) {
    switch (t.dtype) {
        case StDType::F32:
            return DType::F32;
        case StDType::F16:
            return DType::F16;
        case StDType::BF16:
            return DType::BF16;
        case StDType::F64:
            return DType::F64;
        case StDType::I32:
            return DType::I32;
        case StDType::I64:
            return DType::I64;
        case StDType::I16:
            return DType::I16;
        case StDType::I8:
            return DType::I8;
        case StDType::F8_E4M3:
        case StDType::F8_E5M2:
        case StDType::F8_E8M0:
            MOERIG_THROW(UnsupportedError,
                         "{}: tensor '{}' is {}: FP8 weights with block scales (DeepSeek-V3 style) are not supported "
                         "yet; convert the checkpoint to BF16 or a GGUF",
                         source, t.name, st_dtype_name(t.dtype));
        case StDType::F4:
            MOERIG_THROW(UnsupportedError, "{}: tensor '{}' is F4: packed FP4 weights are not supported yet", source,
                         t.name);
        default:
            break;
    }
    if (t.dtype == StDType::U8 && (ends_with(t.name, "_blocks") || ends_with(t.name, "_scales") ||
                                   ends_with(t.name, ".blocks") || ends_with(t.name, ".scales"))) {
        MOERIG_THROW(UnsupportedError,
                     "{}: tensor '{}' is an MXFP4 {} tensor (gpt-oss style): MXFP4 blocks are not supported yet",
                     source, t.name, ends_with(t.name, "blocks") ? "blocks" : "scales");
    }
    MOERIG_THROW(UnsupportedError,
                 "{}: tensor '{}' has dtype {}, which moerig does not compute with (not supported yet)", source, t.name,
                 st_dtype_name(t.dtype));
}

}  // namespace moerig::formats
