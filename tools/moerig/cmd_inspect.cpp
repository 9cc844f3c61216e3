// `moerig inspect FILE [--json]`: what a model file holds. GGUF: metadata (arrays summarised) and the tensor
// table (name, type, shape, bytes) with totals. safetensors (a file, an index.json or a directory): tensors.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/error.h"
#include "tools/moerig/command.h"

namespace moerig::cli {
namespace {

using formats::GgufType;
using formats::GgufValue;

constexpr size_t kArrayHead = 8;        // elements of an array shown
constexpr size_t kMaxStringChars = 96;  // longer strings (chat templates) are cut

std::string shorten(const std::string& s) {
    std::string out = s.size() > kMaxStringChars ? s.substr(0, kMaxStringChars) + "..." : s;
    for (char& c : out)
        if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    return out;
}

std::string scalar_text(const GgufValue& v) {
    switch (v.type) {
        case GgufType::STRING:
            return "\"" + shorten(v.s) + "\"";
        case GgufType::BOOL:
            return v.u ? "true" : "false";
        case GgufType::F32:
        case GgufType::F64:
            return fmt::format("{:g}", v.f);
        case GgufType::I8:
        case GgufType::I16:
        case GgufType::I32:
        case GgufType::I64:
            return std::to_string(v.i);
        default:
            return std::to_string(v.u);
    }
}

std::string value_text(const GgufValue& v) {
    if (v.type != GgufType::ARRAY) return scalar_text(v);
    std::string out = fmt::format("[{} x {}]", v.arr.size(), formats::gguf_type_name(v.elem_type));
    for (size_t i = 0; i < v.arr.size() && i < kArrayHead; ++i) out += (i ? ", " : " ") + value_text(v.arr[i]);
    if (v.arr.size() > kArrayHead) out += ", ...";
    return out;
}

nlohmann::json value_json(const GgufValue& v) {
    switch (v.type) {
        case GgufType::STRING:
            return v.s;
        case GgufType::BOOL:
            return v.u != 0;
        case GgufType::F32:
        case GgufType::F64:
            return v.f;
        case GgufType::I8:
        case GgufType::I16:
        case GgufType::I32:
        case GgufType::I64:
            return v.i;
        case GgufType::ARRAY: {
            nlohmann::json head = nlohmann::json::array();
            for (size_t i = 0; i < v.arr.size() && i < kArrayHead; ++i) head.push_back(value_json(v.arr[i]));
            return {{"type", "array"},
                    {"elem_type", formats::gguf_type_name(v.elem_type)},
                    {"count", v.arr.size()},
                    {"head", head}};
        }
        default:
            return v.u;
    }
}

std::string shape_text(const std::vector<uint64_t>& dims) {
    std::string out = "[";
    for (size_t i = 0; i < dims.size(); ++i) out += (i ? ", " : "") + std::to_string(dims[i]);
    return out + "]";
}

std::string bytes_text(uint64_t n) {
    if (n >= (1ull << 30)) return fmt::format("{:.2f} GiB", n / double(1ull << 30));
    if (n >= (1ull << 20)) return fmt::format("{:.2f} MiB", n / double(1ull << 20));
    if (n >= (1ull << 10)) return fmt::format("{:.2f} KiB", n / double(1ull << 10));
    return fmt::format("{} B", n);
}

void print(const nlohmann::json& j) {
    std::puts(j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

int inspect_gguf(const std::string& path, bool json) {
    const formats::GgufModel model(path);
    const formats::GgufFile& first = model.file(0);
    uint64_t num_elems = 0;
    for (const auto& t : model.tensors()) num_elems += t.num_elems();
    if (json) {
        nlohmann::json meta = nlohmann::json::object();
        for (const auto& key : first.metadata_order()) meta[key] = value_json(first.metadata().at(key));
        nlohmann::json tensors = nlohmann::json::array();
        for (const auto& t : model.tensors()) {
            tensors.push_back({{"name", t.name},
                               {"type", dtype_name(t.type)},
                               {"shape", t.dims},
                               {"bytes", t.num_bytes},
                               {"file", t.file_idx},
                               {"offset", t.offset}});
        }
        print(
            {{"file", path},
             {"format", "gguf"},
             {"version", first.version()},
             {"num_files", model.num_files()},
             {"metadata", meta},
             {"tensors", tensors},
             {"totals",
              {{"tensors", model.tensors().size()}, {"elements", num_elems}, {"bytes", model.total_tensor_bytes()}}}});
        return 0;
    }
    fmt::print("{}: GGUF v{}, {} file(s), {} metadata keys, {} tensors\n\n", path, first.version(), model.num_files(),
               first.metadata().size(), model.tensors().size());
    for (const auto& key : first.metadata_order())
        fmt::print("  {:<44} {}\n", key, value_text(first.metadata().at(key)));
    fmt::print("\n  {:<48} {:<8} {:<24} {:>12}\n", "tensor", "type", "shape", "bytes");
    for (const auto& t : model.tensors())
        fmt::print("  {:<48} {:<8} {:<24} {:>12}\n", t.name, dtype_name(t.type), shape_text(t.dims), t.num_bytes);
    fmt::print("\n  total: {} tensors, {:.3f} B elements, {} ({} bytes)\n", model.tensors().size(), num_elems / 1e9,
               bytes_text(model.total_tensor_bytes()), model.total_tensor_bytes());
    return 0;
}

int inspect_safetensors(const std::string& path, bool json) {
    const formats::SafetensorsModel model(path);
    uint64_t num_elems = 0;
    for (const auto& t : model.tensors()) num_elems += t.num_elems();
    if (json) {
        nlohmann::json tensors = nlohmann::json::array();
        for (const auto& t : model.tensors()) {
            tensors.push_back({{"name", t.name},
                               {"type", formats::st_dtype_name(t.dtype)},
                               {"shape", t.shape},
                               {"bytes", t.num_bytes},
                               {"file", t.file_idx},
                               {"offset", t.offset}});
        }
        print(
            {{"file", path},
             {"format", "safetensors"},
             {"num_files", model.num_files()},
             {"metadata", model.file(0).metadata()},
             {"tensors", tensors},
             {"totals",
              {{"tensors", model.tensors().size()}, {"elements", num_elems}, {"bytes", model.total_tensor_bytes()}}}});
        return 0;
    }
    fmt::print("{}: safetensors, {} file(s), {} tensors\n\n", path, model.num_files(), model.tensors().size());
    for (const auto& [k, v] : model.file(0).metadata()) fmt::print("  {:<44} \"{}\"\n", k, shorten(v));
    fmt::print("\n  {:<48} {:<8} {:<24} {:>12}\n", "tensor", "type", "shape", "bytes");
    for (const auto& t : model.tensors())
        fmt::print("  {:<48} {:<8} {:<24} {:>12}\n", t.name, formats::st_dtype_name(t.dtype), shape_text(t.shape),
                   t.num_bytes);
    fmt::print("\n  total: {} tensors, {:.3f} B elements, {} ({} bytes)\n", model.tensors().size(), num_elems / 1e9,
               bytes_text(model.total_tensor_bytes()), model.total_tensor_bytes());
    return 0;
}

struct InspectArgs {
    std::string path;
    bool json = false;
};

const Registrar kInspect(
    "inspect", "show a model file's metadata and tensor table (GGUF or safetensors)",
    [](CLI::App& sub) {
        auto a = std::make_shared<InspectArgs>();
        sub.add_option("file", a->path, "model.gguf, model.safetensors, model.safetensors.index.json or a directory")
            ->required()
            ->check(CLI::ExistingPath);
        sub.add_flag("--json", a->json, "print JSON");
        return [a] {
            const std::filesystem::path p(a->path);
            const bool st =
                std::filesystem::is_directory(p) || p.extension() == ".safetensors" || p.extension() == ".json";
            return st ? inspect_safetensors(a->path, a->json) : inspect_gguf(a->path, a->json);
        };
    },
    60);

}  // namespace
}  // namespace moerig::cli
