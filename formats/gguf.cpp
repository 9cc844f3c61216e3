// GGUF parsing. Every read is bounds-checked against the mapping so that truncated or corrupt files
// raise FormatError with the offset, never read past the end or allocate absurd amounts.
#include "formats/gguf.h"

#include <cstring>
#include <regex>

#include "kernels/error.h"

namespace moerig::formats {
namespace {

constexpr uint64_t kMaxArrayDepth = 4;

// Sequential bounds-checked reader over the file image.
class Cursor {
  public:
    Cursor(const uint8_t* bytes, uint64_t size, const std::string& path) : p_(bytes), size_(size), path_(path) {}

    uint64_t pos() const { return pos_; }
    uint64_t remaining() const { return size_ - pos_; }

    template <typename T>
    T read(const char* what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, p_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }

    std::string read_string(const char* what) {
        const uint64_t at = pos_;
        const uint64_t len = read<uint64_t>(what);
        if (len > remaining()) {
            MOERIG_THROW(FormatError,
                         "{}: {} at offset {} has length {} but only {} bytes remain (truncated or corrupt)", path_,
                         what, at, len, remaining());
        }
        std::string s(reinterpret_cast<const char*>(p_ + pos_), len);
        pos_ += len;
        return s;
    }

    void need(uint64_t n, const char* what) const {
        if (n > size_ - pos_) {
            MOERIG_THROW(FormatError,
                         "{}: file ends at offset {} while reading {} ({} bytes needed, {} left): truncated", path_,
                         size_, what, n, size_ - pos_);
        }
    }

    [[noreturn]] void fail(uint64_t at, const std::string& msg) const {
        MOERIG_THROW(FormatError, "{}: {} (at offset {})", path_, msg, at);
    }

  private:
    const uint8_t* p_;
    uint64_t size_;
    const std::string& path_;
    uint64_t pos_ = 0;
};

uint64_t wire_size(GgufType t) {
    switch (t) {
        case GgufType::U8:
        case GgufType::I8:
        case GgufType::BOOL:
            return 1;
        case GgufType::U16:
        case GgufType::I16:
            return 2;
        case GgufType::U32:
        case GgufType::I32:
        case GgufType::F32:
            return 4;
        case GgufType::U64:
        case GgufType::I64:
        case GgufType::F64:
            return 8;
        case GgufType::STRING:
            return 8;  // at least the length
        case GgufType::ARRAY:
            return 12;  // at least type + count
    }
    return 1;
}

bool valid_type(uint32_t t) {
    return t <= static_cast<uint32_t>(GgufType::F64);
}

GgufValue read_value(Cursor& c, GgufType type, const std::string& key, uint64_t depth) {
    GgufValue v;
    v.type = type;
    const char* what = "metadata value";
    switch (type) {
        case GgufType::U8:
            v.u = c.read<uint8_t>(what);
            v.i = static_cast<int64_t>(v.u);
            break;
        case GgufType::I8:
            v.i = c.read<int8_t>(what);
            break;
        case GgufType::U16:
            v.u = c.read<uint16_t>(what);
            v.i = static_cast<int64_t>(v.u);
            break;
        case GgufType::I16:
            v.i = c.read<int16_t>(what);
            break;
        case GgufType::U32:
            v.u = c.read<uint32_t>(what);
            v.i = static_cast<int64_t>(v.u);
            break;
        case GgufType::I32:
            v.i = c.read<int32_t>(what);
            break;
        case GgufType::U64:
            v.u = c.read<uint64_t>(what);
            v.i = static_cast<int64_t>(v.u);
            break;
        case GgufType::I64:
            v.i = c.read<int64_t>(what);
            break;
        case GgufType::F32:
            v.f = c.read<float>(what);
            break;
        case GgufType::F64:
            v.f = c.read<double>(what);
            break;
        case GgufType::BOOL: {
            const uint64_t at = c.pos();
            const uint8_t b = c.read<uint8_t>(what);
            if (b > 1) c.fail(at, fmt::format("metadata key '{}': bool value {} is neither 0 nor 1", key, b));
            v.u = b;
            v.i = b;
            break;
        }
        case GgufType::STRING:
            v.s = c.read_string("metadata string");
            break;
        case GgufType::ARRAY: {
            const uint64_t at = c.pos();
            if (depth >= kMaxArrayDepth) c.fail(at, fmt::format("metadata key '{}': arrays nested too deeply", key));
            const uint32_t et = c.read<uint32_t>("array element type");
            if (!valid_type(et)) c.fail(at, fmt::format("metadata key '{}': unknown array element type {}", key, et));
            v.elem_type = static_cast<GgufType>(et);
            const uint64_t n = c.read<uint64_t>("array length");
            // Every element takes at least wire_size bytes: reject counts the rest of the file cannot hold.
            if (n > c.remaining() / wire_size(v.elem_type)) {
                c.fail(at, fmt::format("metadata key '{}': array of {} {} elements does not fit in the {} bytes left",
                                       key, n, gguf_type_name(v.elem_type), c.remaining()));
            }
            v.arr.reserve(n);
            for (uint64_t k = 0; k < n; ++k) v.arr.push_back(read_value(c, v.elem_type, key, depth + 1));
            break;
        }
    }
    if (type == GgufType::I8 || type == GgufType::I16 || type == GgufType::I32 || type == GgufType::I64) {
        v.u = static_cast<uint64_t>(v.i);
    }
    return v;
}

}  // namespace

std::string_view gguf_type_name(GgufType t) {
    switch (t) {
        case GgufType::U8:
            return "u8";
        case GgufType::I8:
            return "i8";
        case GgufType::U16:
            return "u16";
        case GgufType::I16:
            return "i16";
        case GgufType::U32:
            return "u32";
        case GgufType::I32:
            return "i32";
        case GgufType::F32:
            return "f32";
        case GgufType::BOOL:
            return "bool";
        case GgufType::STRING:
            return "string";
        case GgufType::ARRAY:
            return "array";
        case GgufType::U64:
            return "u64";
        case GgufType::I64:
            return "i64";
        case GgufType::F64:
            return "f64";
    }
    return "?";
}

bool GgufValue::is_integer() const {
    switch (type) {
        case GgufType::U8:
        case GgufType::I8:
        case GgufType::U16:
        case GgufType::I16:
        case GgufType::U32:
        case GgufType::I32:
        case GgufType::U64:
        case GgufType::I64:
            return true;
        default:
            return false;
    }
}

uint64_t GgufTensor::num_elems() const {
    uint64_t n = 1;
    for (uint64_t d : dims) n *= d;
    return n;
}

void GgufFile::parse() {
    Cursor c(bytes_, size_, path_);
    c.need(4, "magic");
    if (std::memcmp(bytes_, "GGUF", 4) != 0) c.fail(0, "not a GGUF file (magic is not \"GGUF\")");
    c.read<uint32_t>("magic");
    version_ = c.read<uint32_t>("version");
    if (version_ != 2 && version_ != 3) c.fail(4, fmt::format("unsupported GGUF version {} (2 and 3 are)", version_));
    const uint64_t num_tensors = c.read<uint64_t>("tensor count");
    const uint64_t num_kv = c.read<uint64_t>("metadata count");
    // A key is at least 8 + 4 + 1 bytes, a tensor info at least 8 + 4 + 8 + 4 + 8.
    if (num_kv > c.remaining() / 13)
        c.fail(16, fmt::format("metadata count {} cannot fit in the file (truncated or corrupt)", num_kv));
    if (num_tensors > c.remaining() / 32)
        c.fail(8, fmt::format("tensor count {} cannot fit in the file (truncated or corrupt)", num_tensors));

    for (uint64_t k = 0; k < num_kv; ++k) {
        const uint64_t at = c.pos();
        std::string key = c.read_string("metadata key");
        const uint64_t type_at = c.pos();
        const uint32_t t = c.read<uint32_t>("metadata type");
        if (!valid_type(t)) c.fail(type_at, fmt::format("metadata key '{}': unknown value type {}", key, t));
        GgufValue v = read_value(c, static_cast<GgufType>(t), key, 0);
        if (kv_.count(key)) c.fail(at, fmt::format("metadata key '{}' appears twice", key));
        kv_order_.push_back(key);
        kv_.emplace(std::move(key), std::move(v));
    }
    if (auto it = kv_.find("general.alignment"); it != kv_.end()) {
        const GgufValue& a = it->second;
        if (!a.is_integer() || a.u == 0 || a.u > (1u << 30) || (a.u & (a.u - 1)) != 0) {
            c.fail(c.pos(), fmt::format("general.alignment must be a power of two, got {}", a.u));
        }
        alignment_ = static_cast<uint32_t>(a.u);
    }

    tensors_.reserve(num_tensors);
    for (uint64_t k = 0; k < num_tensors; ++k) {
        const uint64_t at = c.pos();
        GgufTensor ti;
        ti.name = c.read_string("tensor name");
        const uint32_t n_dims = c.read<uint32_t>("tensor dimension count");
        if (n_dims == 0 || n_dims > 4)
            c.fail(at, fmt::format("tensor '{}' has {} dimensions (1 to 4 allowed)", ti.name, n_dims));
        uint64_t elems = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            const uint64_t ne = c.read<uint64_t>("tensor dimension");
            if (ne == 0 || ne > (uint64_t{1} << 40) || elems > (uint64_t{1} << 62) / ne) {
                c.fail(at, fmt::format("tensor '{}' dimension {} is {}, out of range", ti.name, d, ne));
            }
            elems *= ne;
            ti.dims.push_back(ne);
        }
        const uint64_t type_at = c.pos();
        const uint32_t type_id = c.read<uint32_t>("tensor type");
        auto traits = dtype_traits(type_id);
        if (!traits) c.fail(type_at, fmt::format("tensor '{}' has unknown ggml type id {}", ti.name, type_id));
        ti.type = traits->type;
        if (ti.dims[0] % traits->block_elems != 0) {
            c.fail(at, fmt::format("tensor '{}': row length {} is not a multiple of the {} block size {}", ti.name,
                                   ti.dims[0], traits->name, traits->block_elems));
        }
        ti.num_bytes = elems / traits->block_elems * traits->block_bytes;
        ti.offset = c.read<uint64_t>("tensor data offset");
        if (ti.offset % alignment_ != 0) {
            c.fail(at, fmt::format("tensor '{}' data offset {} is not aligned to {}", ti.name, ti.offset, alignment_));
        }
        tensors_.push_back(std::move(ti));
    }
    data_offset_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
    for (auto& ti : tensors_) {
        const uint64_t end = data_offset_ + ti.offset + ti.num_bytes;
        if (ti.offset > size_ || end > size_ || end < ti.offset) {
            MOERIG_THROW(FormatError,
                         "{}: tensor '{}' data [{}, {}) lies past the end of the file ({} bytes): truncated", path_,
                         ti.name, data_offset_ + ti.offset, end, size_);
        }
        ti.data = bytes_ + data_offset_ + ti.offset;
    }
}

GgufModel::GgufModel(const std::filesystem::path& path) {
    files_.push_back(std::make_unique<GgufFile>(path));
    const auto& kv = files_.front()->metadata();
    auto count_it = kv.find("split.count");
    if (count_it != kv.end() && count_it->second.is_integer() && count_it->second.u > 1) {
        const uint64_t count = count_it->second.u;
        static const std::regex kSplit(R"((.*)-(\d{5})-of-(\d{5})\.gguf)");
        std::smatch m;
        const std::string fname = path.filename().string();
        MOERIG_CHECK(std::regex_match(fname, m, kSplit), FormatError,
                     "{}: split.count is {} but the name is not of the form NAME-00001-of-{:05d}.gguf", path.string(),
                     count, count);
        MOERIG_CHECK(std::stoul(m[2].str()) == 1, FormatError,
                     "{}: open the first part (-00001-of-{:05d}) of a split model", path.string(), count);
        for (uint64_t k = 2; k <= count; ++k) {
            auto part = path.parent_path() / fmt::format("{}-{:05d}-of-{:05d}.gguf", m[1].str(), k, count);
            MOERIG_CHECK(std::filesystem::exists(part), FormatError, "{}: split part {} of {} is missing: {}",
                         path.string(), k, count, part.string());
            files_.push_back(std::make_unique<GgufFile>(part));
        }
    }
    for (uint32_t f = 0; f < files_.size(); ++f) {
        for (auto& t : files_[f]->tensors()) {
            t.file_idx = f;
            MOERIG_CHECK(!tensor_idx_.count(t.name), FormatError, "{}: tensor '{}' appears twice", files_[f]->path(),
                         t.name);
            tensor_idx_[t.name] = tensors_.size();
            tensors_.push_back(t);
        }
    }
}

GgufModel::GgufModel(std::string path, std::map<std::string, GgufValue> metadata, std::vector<GgufTensor> tensors,
                     std::shared_ptr<const void> keep_alive, std::function<std::string(const std::string&)> describe)
    : tensors_(std::move(tensors)),
      path_(std::move(path)),
      metadata_(std::move(metadata)),
      keep_alive_(std::move(keep_alive)),
      describe_(std::move(describe)) {
    for (size_t i = 0; i < tensors_.size(); ++i) {
        MOERIG_CHECK(tensor_idx_.emplace(tensors_[i].name, i).second, FormatError, "{}: tensor '{}' appears twice",
                     path_, describe_tensor(tensors_[i].name));
    }
}

const GgufValue* GgufModel::find(const std::string& key) const {
    auto it = metadata().find(key);
    return it == metadata().end() ? nullptr : &it->second;
}

const GgufTensor* GgufModel::find_tensor(const std::string& name) const {
    auto it = tensor_idx_.find(name);
    return it == tensor_idx_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensor& GgufModel::tensor(const std::string& name) const {
    const GgufTensor* t = find_tensor(name);
    MOERIG_CHECK(t != nullptr, FormatError, "{}: tensor '{}' is missing", path(), name);
    return *t;
}

namespace {
[[noreturn]] void wrong_type(const std::string& path, const std::string& key, const GgufValue& v, const char* want) {
    MOERIG_THROW(FormatError, "{}: metadata key '{}' is {} but {} was expected", path, key, gguf_type_name(v.type),
                 want);
}
}  // namespace

std::optional<std::string> GgufModel::get_string_opt(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != GgufType::STRING) wrong_type(path(), key, *v, "a string");
    return v->s;
}

std::string GgufModel::get_string(const std::string& key) const {
    auto v = get_string_opt(key);
    MOERIG_CHECK(v.has_value(), FormatError, "{}: metadata key '{}' is missing", path(), key);
    return *v;
}

std::optional<uint64_t> GgufModel::get_u64_opt(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_integer() || v->i < 0) wrong_type(path(), key, *v, "a non-negative integer");
    return v->u;
}

uint64_t GgufModel::get_u64(const std::string& key) const {
    auto v = get_u64_opt(key);
    MOERIG_CHECK(v.has_value(), FormatError, "{}: metadata key '{}' is missing", path(), key);
    return *v;
}

std::optional<double> GgufModel::get_f64_opt(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->is_float()) return v->f;
    if (v->is_integer()) return static_cast<double>(v->i);
    wrong_type(path(), key, *v, "a number");
}

double GgufModel::get_f64(const std::string& key) const {
    auto v = get_f64_opt(key);
    MOERIG_CHECK(v.has_value(), FormatError, "{}: metadata key '{}' is missing", path(), key);
    return *v;
}

std::optional<bool> GgufModel::get_bool_opt(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != GgufType::BOOL && !v->is_integer()) wrong_type(path(), key, *v, "a bool");
    return v->u != 0;
}

std::vector<std::string> GgufModel::get_strings(const std::string& key) const {
    const GgufValue* v = find(key);
    MOERIG_CHECK(v != nullptr, FormatError, "{}: metadata key '{}' is missing", path(), key);
    if (v->type != GgufType::ARRAY || v->elem_type != GgufType::STRING)
        wrong_type(path(), key, *v, "an array of strings");
    std::vector<std::string> out;
    out.reserve(v->arr.size());
    for (const auto& e : v->arr) out.push_back(e.s);
    return out;
}

std::vector<int64_t> GgufModel::get_ints(const std::string& key) const {
    const GgufValue* v = find(key);
    MOERIG_CHECK(v != nullptr, FormatError, "{}: metadata key '{}' is missing", path(), key);
    if (v->type != GgufType::ARRAY) wrong_type(path(), key, *v, "an array of integers");
    std::vector<int64_t> out;
    out.reserve(v->arr.size());
    for (const auto& e : v->arr) {
        if (!e.is_integer() && e.type != GgufType::BOOL) wrong_type(path(), key, *v, "an array of integers");
        out.push_back(e.i);
    }
    return out;
}

std::vector<double> GgufModel::get_floats(const std::string& key) const {
    const GgufValue* v = find(key);
    MOERIG_CHECK(v != nullptr, FormatError, "{}: metadata key '{}' is missing", path(), key);
    if (v->type != GgufType::ARRAY) wrong_type(path(), key, *v, "an array of numbers");
    std::vector<double> out;
    out.reserve(v->arr.size());
    for (const auto& e : v->arr) {
        if (e.is_float())
            out.push_back(e.f);
        else if (e.is_integer())
            out.push_back(static_cast<double>(e.i));
        else
            wrong_type(path(), key, *v, "an array of numbers");
    }
    return out;
}

uint64_t GgufModel::total_tensor_bytes() const {
    uint64_t n = 0;
    for (const auto& t : tensors_) n += t.num_bytes;
    return n;
}

}  // namespace moerig::formats
