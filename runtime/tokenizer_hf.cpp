// Tokenizer construction from a Hugging Face tokenizer.json (+ tokenizer_config.json), and encoding/decoding with
// the `tokenizers` library's semantics: added tokens are split off first (leftmost, longest), the normalizer and
// pre-tokenizer run on the text between them, BPE merges by merge rank (lowest first, leftmost on ties) over
// byte-level symbols or over characters with byte fallback, the post-processor's template adds BOS/EOS.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <queue>
#include <sstream>

#include "kernels/error.h"
#include "runtime/tokenizer.h"
#include "runtime/tokenizer_nfc.h"
#include "runtime/tokenizer_pretokenize.h"

namespace moerig::runtime {

using nlohmann::json;

struct HfTokenizerOptions {
    enum class Metaspace { kNone, kAlways, kFirst, kNever };
    enum class Strip { kNone, kFirstSpace, kFirstToken };
    struct Added {
        int32_t id;
        bool lstrip, rstrip, single_word;
    };
    bool nfc = false;
    bool byte_level = false;     // ByteLevel pre-tokenizer: kind_ is kBpe
    bool prefix_space = false;   // ByteLevel add_prefix_space
    bool prepend = false;        // normalizer Prepend("▁")
    bool replace_space = false;  // ' ' -> "▁" (normalizer Replace or Metaspace)
    Metaspace metaspace = Metaspace::kNone;
    bool metaspace_split = false;
    bool byte_fallback = false;
    bool fuse_unk = false;
    Strip strip = Strip::kNone;
    std::vector<Added> added;                  // every added token
    std::vector<std::vector<size_t>> by_byte;  // (256) indices into added by first byte of the content
};

namespace {

constexpr std::string_view kMeta = "\xE2\x96\x81";  // ▁

// Field access with messages that name the file and the JSON path.
const json& member(const json& obj, const char* key, const std::string& path, const std::string& source) {
    MOERIG_CHECK(obj.is_object(), FormatError, "{}: field '{}' should be an object", source, path);
    auto it = obj.find(key);
    MOERIG_CHECK(it != obj.end(), FormatError, "{}: field '{}.{}' is missing", source, path, key);
    return *it;
}

std::string str_field(const json& obj, const char* key, const std::string& path, const std::string& source) {
    const json& v = member(obj, key, path, source);
    MOERIG_CHECK(v.is_string(), FormatError, "{}: field '{}.{}' should be a string", source, path, key);
    return v.get<std::string>();
}

bool bool_field(const json& obj, const char* key, bool dflt, const std::string& path, const std::string& source) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return dflt;
    MOERIG_CHECK(it->is_boolean(), FormatError, "{}: field '{}.{}' should be a bool", source, path, key);
    return it->get<bool>();
}

std::string type_of(const json& obj, const std::string& path, const std::string& source) {
    return str_field(obj, "type", path, source);
}

json parse(std::string_view text, const std::string& source) {
    try {
        return json::parse(text.begin(), text.end());
    } catch (const json::exception& e) {
        MOERIG_THROW(FormatError, "{}: not valid JSON: {}", source, e.what());
    }
}

std::string read_text(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    MOERIG_CHECK(f.good(), FormatError, "{}: cannot open the file", path);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// UTF-8 read as Rust's String::from_utf8_lossy does: each maximal ill-formed subsequence becomes one U+FFFD.
std::string utf8_lossy(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    const size_t n = s.size();
    for (size_t i = 0; i < n;) {
        const uint8_t b = p[i];
        if (b < 0x80) {
            out.push_back(static_cast<char>(b));
            ++i;
            continue;
        }
        size_t len = 0;
        uint8_t lo = 0x80, hi = 0xBF;  // range of the second byte
        if (b >= 0xC2 && b <= 0xDF) {
            len = 2;
        } else if (b >= 0xE0 && b <= 0xEF) {
            len = 3;
            if (b == 0xE0) lo = 0xA0;
            if (b == 0xED) hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            len = 4;
            if (b == 0xF0) lo = 0x90;
            if (b == 0xF4) hi = 0x8F;
        }
        size_t j = i + 1;
        if (len != 0 && j < n && p[j] >= lo && p[j] <= hi) {
            ++j;
            while (j < i + len && j < n && p[j] >= 0x80 && p[j] <= 0xBF) ++j;
        }
        if (len != 0 && j == i + len) {
            out.append(s.substr(i, len));
        } else {
            out += "\xEF\xBF\xBD";
        }
        i = j;
    }
    return out;
}

bool is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

bool is_word_byte(unsigned char c) {
    return c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

void parse_normalizer(const json& n, const std::string& path, HfTokenizerOptions& o, const std::string& source) {
    if (n.is_null()) return;
    const std::string type = type_of(n, path, source);
    if (type == "Sequence") {
        const json& list = member(n, "normalizers", path, source);
        MOERIG_CHECK(list.is_array(), FormatError, "{}: field '{}.normalizers' should be an array", source, path);
        for (size_t i = 0; i < list.size(); ++i)
            parse_normalizer(list[i], path + ".normalizers[" + std::to_string(i) + "]", o, source);
    } else if (type == "NFC") {
        o.nfc = true;
    } else if (type == "Prepend") {
        const std::string p = str_field(n, "prepend", path, source);
        MOERIG_CHECK(p == kMeta, UnsupportedError, "{}: field '{}.prepend' is '{}'; only '▁' is supported", source,
                     path, p);
        o.prepend = true;
    } else if (type == "Replace") {
        const json& pat = member(n, "pattern", path, source);
        const std::string content = str_field(n, "content", path, source);
        const bool ok = pat.is_object() && pat.contains("String") && pat["String"] == " " && content == kMeta;
        MOERIG_CHECK(ok, UnsupportedError,
                     "{}: field '{}' is a Replace normalizer other than ' ' -> '▁', which is not supported", source,
                     path);
        o.replace_space = true;
    } else {
        MOERIG_THROW(UnsupportedError, "{}: field '{}.type' is normalizer '{}', which is not supported", source, path,
                     type);
    }
}

void parse_pre(const json& p, const std::string& path, HfTokenizerOptions& o, std::vector<std::string>& regexes,
               const std::string& source) {
    if (p.is_null()) return;
    const std::string type = type_of(p, path, source);
    MOERIG_CHECK(!o.byte_level, UnsupportedError,
                 "{}: field '{}' is a pre-tokenizer after ByteLevel, which is not supported", source, path);
    if (type == "Sequence") {
        const json& list = member(p, "pretokenizers", path, source);
        MOERIG_CHECK(list.is_array(), FormatError, "{}: field '{}.pretokenizers' should be an array", source, path);
        for (size_t i = 0; i < list.size(); ++i)
            parse_pre(list[i], path + ".pretokenizers[" + std::to_string(i) + "]", o, regexes, source);
    } else if (type == "ByteLevel") {
        o.byte_level = true;
        o.prefix_space = bool_field(p, "add_prefix_space", false, path, source);
        if (bool_field(p, "use_regex", true, path, source)) regexes.emplace_back(kHfByteLevelRegex);
    } else if (type == "Split") {
        const json& pat = member(p, "pattern", path, source);
        MOERIG_CHECK(pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string(), UnsupportedError,
                     "{}: field '{}.pattern' is not a Regex pattern; only regex splits are supported", source, path);
        const std::string behavior = str_field(p, "behavior", path, source);
        MOERIG_CHECK(behavior == "Isolated" && !bool_field(p, "invert", false, path, source), UnsupportedError,
                     "{}: field '{}.behavior' is '{}' (invert {}); only Isolated without invert is supported", source,
                     path, behavior, bool_field(p, "invert", false, path, source));
        const std::string regex = pat["Regex"].get<std::string>();
        const char* known = hf_split_regex(regex);
        MOERIG_CHECK(known != nullptr, UnsupportedError,
                     "{}: field '{}.pattern.Regex' is a pre-tokenizer regex moerig does not know: '{}'", source, path,
                     regex);
        regexes.emplace_back(known);
    } else if (type == "Digits") {
        regexes.emplace_back(bool_field(p, "individual_digits", false, path, source) ? "\\p{N}" : "\\p{N}+");
    } else if (type == "Metaspace") {
        const std::string r = str_field(p, "replacement", path, source);
        MOERIG_CHECK(r == kMeta, UnsupportedError, "{}: field '{}.replacement' is '{}'; only '▁' is supported", source,
                     path, r);
        o.replace_space = true;
        o.metaspace_split = bool_field(p, "split", true, path, source);
        if (auto it = p.find("prepend_scheme"); it != p.end() && !it->is_null()) {
            const std::string s = str_field(p, "prepend_scheme", path, source);
            if (s == "always")
                o.metaspace = HfTokenizerOptions::Metaspace::kAlways;
            else if (s == "first")
                o.metaspace = HfTokenizerOptions::Metaspace::kFirst;
            else if (s == "never")
                o.metaspace = HfTokenizerOptions::Metaspace::kNever;
            else
                MOERIG_THROW(FormatError, "{}: field '{}.prepend_scheme' is '{}' (expected always, first or never)",
                             source, path, s);
        } else {
            o.metaspace = bool_field(p, "add_prefix_space", true, path, source) ? HfTokenizerOptions::Metaspace::kAlways
                                                                                : HfTokenizerOptions::Metaspace::kNever;
        }
    } else {
        MOERIG_THROW(UnsupportedError, "{}: field '{}.type' is pre-tokenizer '{}', which is not supported", source,
                     path, type);
    }
}

void parse_decoder(const json& d, const std::string& path, HfTokenizerOptions& o, const std::string& source) {
    if (d.is_null() || !d.is_object()) return;
    const std::string type = type_of(d, path, source);
    if (type == "Sequence") {
        const json& list = member(d, "decoders", path, source);
        if (!list.is_array()) return;
        for (size_t i = 0; i < list.size(); ++i)
            parse_decoder(list[i], path + ".decoders[" + std::to_string(i) + "]", o, source);
    } else if (type == "Strip") {
        // "start" is read as a double: any JSON number converts to it, where a huge one would not fit an int.
        const auto start = d.find("start");
        const bool strips = start != d.end() && start->is_number() && start->get<double>() >= 1;
        if (strips && d.value("content", std::string()) == " ") o.strip = HfTokenizerOptions::Strip::kFirstSpace;
    } else if (type == "Metaspace") {
        const std::string scheme = d.value("prepend_scheme", std::string());
        const bool prefix = scheme.empty() ? d.value("add_prefix_space", true) : scheme != "never";
        if (prefix) o.strip = HfTokenizerOptions::Strip::kFirstToken;
    }
}

// Token ids named by a post-processor.
struct Template {
    std::vector<int32_t> prefix, suffix;
};

void parse_post(const json& p, const std::string& path, Template& t, const std::string& source,
                const std::function<int32_t(const std::string&, const std::string&)>& id_of) {
    if (p.is_null()) return;
    const std::string type = type_of(p, path, source);
    if (type == "Sequence") {
        const json& list = member(p, "processors", path, source);
        MOERIG_CHECK(list.is_array(), FormatError, "{}: field '{}.processors' should be an array", source, path);
        for (size_t i = 0; i < list.size(); ++i)
            parse_post(list[i], path + ".processors[" + std::to_string(i) + "]", t, source, id_of);
    } else if (type == "ByteLevel") {
        // offsets only
    } else if (type == "TemplateProcessing") {
        const json& single = member(p, "single", path, source);
        MOERIG_CHECK(single.is_array(), FormatError, "{}: field '{}.single' should be an array", source, path);
        const json& specials = member(p, "special_tokens", path, source);
        bool seen_seq = false;
        t.prefix.clear();
        t.suffix.clear();
        for (size_t i = 0; i < single.size(); ++i) {
            const std::string ipath = path + ".single[" + std::to_string(i) + "]";
            const json& item = single[i];
            if (item.is_object() && item.contains("Sequence")) {
                MOERIG_CHECK(!seen_seq, UnsupportedError, "{}: field '{}' repeats the sequence", source, ipath);
                seen_seq = true;
                continue;
            }
            const json& st = member(item, "SpecialToken", ipath, source);
            const std::string name = str_field(st, "id", ipath + ".SpecialToken", source);
            const json& entry = member(specials, name.c_str(), path + ".special_tokens", source);
            const json& ids = member(entry, "ids", path + ".special_tokens." + name, source);
            MOERIG_CHECK(ids.is_array(), FormatError, "{}: field '{}.special_tokens.{}.ids' should be an array", source,
                         path, name);
            for (const json& id : ids) {
                MOERIG_CHECK(id.is_number_integer(), FormatError,
                             "{}: field '{}.special_tokens.{}.ids' should hold integers", source, path, name);
                (seen_seq ? t.suffix : t.prefix).push_back(id_of(std::to_string(id.get<int64_t>()), ipath));
            }
        }
        MOERIG_CHECK(seen_seq, FormatError, "{}: field '{}.single' has no Sequence item", source, path);
    } else if (type == "RobertaProcessing" || type == "BertProcessing") {
        for (const char* key : {"cls", "sep"}) {
            const json& v = member(p, key, path, source);
            MOERIG_CHECK(v.is_array() && v.size() == 2 && v[1].is_number_integer(), FormatError,
                         "{}: field '{}.{}' should be [token, id]", source, path, key);
            (key[0] == 'c' ? t.prefix : t.suffix) = {id_of(std::to_string(v[1].get<int64_t>()), path + "." + key)};
        }
    } else {
        MOERIG_THROW(UnsupportedError, "{}: field '{}.type' is post-processor '{}', which is not supported", source,
                     path, type);
    }
}

// A config token entry: "text", {"content": "text", ...} or null.
std::optional<std::string> config_token(const json& cfg, const char* key, const std::string& source) {
    auto it = cfg.find(key);
    if (it == cfg.end() || it->is_null()) return std::nullopt;
    if (it->is_string()) return it->get<std::string>();
    MOERIG_CHECK(it->is_object() && it->contains("content") && (*it)["content"].is_string(), FormatError,
                 "{}: field '{}' should be a string or an object with a string 'content'", source, key);
    return (*it)["content"].get<std::string>();
}

}  // namespace

Tokenizer Tokenizer::from_hf_json(const std::string& path_or_dir) {
    std::error_code ec;
    const std::string path =
        std::filesystem::is_directory(path_or_dir, ec) ? path_or_dir + "/tokenizer.json" : path_or_dir;
    const std::string text = read_text(path);
    const size_t slash = path.find_last_of('/');
    const std::string config_path =
        (slash == std::string::npos ? std::string() : path.substr(0, slash + 1)) + "tokenizer_config.json";
    std::string config;
    if (std::ifstream(config_path).good()) config = read_text(config_path);
    return from_hf_json_text(text, config, path, config_path);
}

Tokenizer Tokenizer::from_hf_json_text(std::string_view tokenizer_json, std::string_view config_json,
                                       const std::string& source, const std::string& config_source) {
    try {
        return from_hf_json_checked(tokenizer_json, config_json, source, config_source);
    } catch (const json::exception& e) {  // a JSON value of an unexpected type the checks above did not name
        MOERIG_THROW(FormatError, "{}: unexpected JSON content: {}", source, e.what());
    }
}

Tokenizer Tokenizer::from_hf_json_checked(std::string_view tokenizer_json, std::string_view config_json,
                                          const std::string& source, const std::string& config_source) {
    const json doc = parse(tokenizer_json, source);
    MOERIG_CHECK(doc.is_object(), FormatError, "{}: the top level should be a JSON object", source);
    auto opts = std::make_shared<HfTokenizerOptions>();
    HfTokenizerOptions& o = *opts;

    const json& model = member(doc, "model", "<root>", source);
    MOERIG_CHECK(model.is_object(), FormatError, "{}: field 'model' should be an object", source);
    const std::string mtype = model.contains("type") ? type_of(model, "model", source) : std::string("BPE");
    MOERIG_CHECK(mtype == "BPE", UnsupportedError,
                 "{}: field 'model.type' is '{}'; only BPE tokenizers are supported (not WordPiece, Unigram, "
                 "WordLevel)",
                 source, mtype);
    if (auto it = model.find("dropout"); it != model.end() && !it->is_null()) {
        MOERIG_CHECK(it->is_number() && it->get<double>() == 0.0, UnsupportedError,
                     "{}: field 'model.dropout' is set; BPE dropout is not supported", source);
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
        auto it = model.find(key);
        MOERIG_CHECK(it == model.end() || it->is_null() || (it->is_string() && it->get<std::string>().empty()),
                     UnsupportedError, "{}: field 'model.{}' is set, which is not supported", source, key);
    }
    o.byte_fallback = bool_field(model, "byte_fallback", false, "model", source);
    o.fuse_unk = bool_field(model, "fuse_unk", false, "model", source);

    parse_normalizer(doc.value("normalizer", json()), "normalizer", o, source);
    std::vector<std::string> regexes;
    parse_pre(doc.value("pre_tokenizer", json()), "pre_tokenizer", o, regexes, source);
    parse_decoder(doc.value("decoder", json()), "decoder", o, source);
    MOERIG_CHECK(!(o.byte_level && (o.replace_space || o.prepend)), UnsupportedError,
                 "{}: field 'pre_tokenizer' mixes ByteLevel with a '▁' space replacement, which is not supported",
                 source);
    MOERIG_CHECK(o.byte_level || o.replace_space, UnsupportedError,
                 "{}: field 'pre_tokenizer' has neither ByteLevel nor Metaspace (and 'normalizer' does not replace "
                 "spaces with '▁'); only byte-level and SentencePiece-style BPE are supported",
                 source);
    MOERIG_CHECK(regexes.empty() || o.byte_level, UnsupportedError,
                 "{}: field 'pre_tokenizer' splits by regex without ByteLevel, which is not supported", source);

    Tokenizer t;
    t.source_ = source;
    t.kind_ = o.byte_level ? TokenizerKind::kBpe : TokenizerKind::kSpm;
    t.pre_name_ = "hf";
    t.ignore_merges_ = bool_field(model, "ignore_merges", false, "model", source);
    if (o.byte_level) t.pre_ = std::make_unique<PreTokenizer>(regexes);

    // Vocabulary: model.vocab plus added_tokens; ids may leave holes, which become unused placeholders.
    const json& vocab = member(model, "vocab", "model", source);
    MOERIG_CHECK(vocab.is_object(), FormatError, "{}: field 'model.vocab' should be an object", source);
    const json& added = doc.value("added_tokens", json::array());
    MOERIG_CHECK(added.is_array(), FormatError, "{}: field 'added_tokens' should be an array", source);
    constexpr int64_t kMaxVocab = int64_t{1} << 31;
    int64_t n = 0;
    auto check_id = [&](const json& id, const std::string& field) {
        MOERIG_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() < kMaxVocab - 1, FormatError,
                     "{}: field '{}' should be a token id (integer 0 to 2^31-2)", source, field);
        n = std::max(n, id.get<int64_t>() + 1);
        return static_cast<int32_t>(id.get<int64_t>());
    };
    for (auto it = vocab.begin(); it != vocab.end(); ++it) check_id(it.value(), "model.vocab." + it.key());
    for (size_t i = 0; i < added.size(); ++i)
        check_id(member(added[i], "id", "added_tokens[" + std::to_string(i) + "]", source),
                 "added_tokens[" + std::to_string(i) + "].id");
    MOERIG_CHECK(n > 0, FormatError, "{}: field 'model.vocab' is empty", source);
    const auto entries = static_cast<int64_t>(vocab.size() + added.size());
    MOERIG_CHECK(n <= 4 * entries + 65536, FormatError,
                 "{}: token ids reach {} but there are only {} tokens in 'model.vocab' and 'added_tokens'", source,
                 n - 1, entries);
    t.texts_.assign(static_cast<size_t>(n), std::string());
    t.scores_.assign(static_cast<size_t>(n), 0.f);
    t.attrs_.assign(static_cast<size_t>(n), kAttrUndefined);
    t.ids_.reserve(static_cast<size_t>(n) * 2);
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        const auto id = static_cast<int32_t>(it.value().get<int64_t>());
        MOERIG_CHECK(t.attrs_[id] == kAttrUndefined, FormatError,
                     "{}: field 'model.vocab' gives id {} to both '{}' and '{}'", source, id, t.texts_[id], it.key());
        t.texts_[id] = it.key();
        t.attrs_[id] = kAttrNormal;
        t.ids_.emplace(it.key(), id);
    }
    std::vector<bool> is_added(static_cast<size_t>(n), false);
    for (size_t i = 0; i < added.size(); ++i) {
        const std::string path = "added_tokens[" + std::to_string(i) + "]";
        const auto id = static_cast<int32_t>(added[i]["id"].get<int64_t>());
        std::string content = str_field(added[i], "content", path, source);
        MOERIG_CHECK(!content.empty(), FormatError, "{}: field '{}.content' is empty", source, path);
        MOERIG_CHECK(t.attrs_[id] == kAttrUndefined || t.texts_[id] == content, FormatError,
                     "{}: field '{}' gives id {} to '{}', which model.vocab gives to '{}'", source, path, id, content,
                     t.texts_[id]);
        const bool special = bool_field(added[i], "special", false, path, source);
        t.attrs_[id] = special ? kAttrControl : kAttrUserDefined;
        t.texts_[id] = content;
        t.ids_[content] = id;  // an added token wins the text, as in the tokenizers library
        if (!is_added[id]) {
            o.added.push_back({id, bool_field(added[i], "lstrip", false, path, source),
                               bool_field(added[i], "rstrip", false, path, source),
                               bool_field(added[i], "single_word", false, path, source)});
            is_added[id] = true;
        }
    }
    for (size_t i = 0; i < t.texts_.size(); ++i) {
        if (t.attrs_[i] == kAttrUndefined) {
            t.texts_[i] = "[HF_UNUSED_" + std::to_string(i) + "]";
            t.attrs_[i] = kAttrUnused;
        }
    }
    if (o.byte_fallback) {
        for (int b = 0; b < 256; ++b) {
            static constexpr char kHex[] = "0123456789ABCDEF";
            const char name[7] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>', 0};
            const int32_t id = t.find_token(name);
            if (id != kNoToken && t.attrs_[id] == kAttrNormal) t.attrs_[id] = kAttrByte;
        }
    }
    if (auto it = model.find("unk_token"); it != model.end() && !it->is_null()) {
        MOERIG_CHECK(it->is_string(), FormatError, "{}: field 'model.unk_token' should be a string", source);
        t.unk_id_ = t.find_token(it->get<std::string>());
        MOERIG_CHECK(t.unk_id_ != kNoToken, FormatError, "{}: field 'model.unk_token' names '{}', which is not a token",
                     source, it->get<std::string>());
        if (t.attrs_[t.unk_id_] == kAttrNormal) t.attrs_[t.unk_id_] = kAttrUnknown;
    }

    // Merges: "a b" strings or [a, b] pairs; a, b and a+b must be tokens. Rank = position; first one wins.
    const json& merges = model.value("merges", json::array());
    MOERIG_CHECK(merges.is_array(), FormatError, "{}: field 'model.merges' should be an array", source);
    t.merge_ranks_.reserve(merges.size() * 2);
    for (size_t i = 0; i < merges.size(); ++i) {
        const json& m = merges[i];
        std::string a, b;
        if (m.is_string()) {
            const std::string s = m.get<std::string>();
            const size_t sp = s.find(' ');
            MOERIG_CHECK(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos, FormatError,
                         "{}: field 'model.merges[{}]' is '{}'; expected two tokens separated by one space", source, i,
                         s);
            a = s.substr(0, sp);
            b = s.substr(sp + 1);
        } else {
            MOERIG_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(), FormatError,
                         "{}: field 'model.merges[{}]' should be a string or a pair of strings", source, i);
            a = m[0].get<std::string>();
            b = m[1].get<std::string>();
        }
        MOERIG_CHECK(t.find_token(a) != kNoToken && t.find_token(b) != kNoToken && t.find_token(a + b) != kNoToken,
                     FormatError,
                     "{}: field 'model.merges[{}]' merges '{}' and '{}', but '{}', '{}' or '{}' is not a token", source,
                     i, a, b, a, b, a + b);
        t.merge_ranks_.emplace(a + '\0' + b, static_cast<int32_t>(i));
    }

    // BOS/EOS: the post-processor's template, then tokenizer_config.json.
    Template tmpl;
    parse_post(doc.value("post_processor", json()), "post_processor", tmpl, source,
               [&](const std::string& id_text, const std::string& field) {
                   const int64_t id = std::stoll(id_text);
                   MOERIG_CHECK(id >= 0 && id < n, FormatError,
                                "{}: field '{}' names token id {} outside the vocabulary", source, field, id);
                   return static_cast<int32_t>(id);
               });
    MOERIG_CHECK(
        tmpl.prefix.size() <= 1 && tmpl.suffix.size() <= 1, UnsupportedError,
        "{}: field 'post_processor' adds {} tokens before and {} after the text; at most one each is supported", source,
        tmpl.prefix.size(), tmpl.suffix.size());
    if (!tmpl.prefix.empty()) {
        t.bos_id_ = tmpl.prefix[0];
        t.add_bos_ = true;
    }
    if (!tmpl.suffix.empty()) {
        t.eos_id_ = tmpl.suffix[0];
        t.add_eos_ = true;
    }
    if (!config_json.empty()) {
        const std::string& csrc = config_source.empty() ? source : config_source;
        const json cfg = parse(config_json, csrc);
        MOERIG_CHECK(cfg.is_object(), FormatError, "{}: the top level should be a JSON object", csrc);
        auto token_id = [&](const char* key, int32_t& id) {
            if (auto text = config_token(cfg, key, csrc)) {
                const int32_t found = t.find_token(*text);
                MOERIG_CHECK(found != kNoToken, FormatError, "{}: field '{}' names '{}', which is not a token", csrc,
                             key, *text);
                id = found;
            }
        };
        token_id("bos_token", t.bos_id_);
        token_id("eos_token", t.eos_id_);
        token_id("pad_token", t.pad_id_);
        t.add_bos_ = bool_field(cfg, "add_bos_token", t.add_bos_, "<root>", csrc);
        t.add_eos_ = bool_field(cfg, "add_eos_token", t.add_eos_, "<root>", csrc);
        MOERIG_CHECK(!t.add_bos_ || t.bos_id_ != kNoToken, FormatError,
                     "{}: field 'add_bos_token' is true but there is no bos_token", csrc);
        MOERIG_CHECK(!t.add_eos_ || t.eos_id_ != kNoToken, FormatError,
                     "{}: field 'add_eos_token' is true but there is no eos_token", csrc);
    }
    t.add_space_prefix_ = false;

    o.by_byte.assign(256, {});
    for (size_t i = 0; i < o.added.size(); ++i)
        o.by_byte[static_cast<uint8_t>(t.texts_[o.added[i].id][0])].push_back(i);
    t.hf_ = std::move(opts);
    t.finish_setup_hf();
    return t;
}

std::vector<int32_t> Tokenizer::encode_hf(std::string_view text, bool add_special, bool parse_special) const {
    const HfTokenizerOptions& o = *hf_;
    // Added tokens, leftmost then longest (the library's Aho-Corasick LeftmostLongest), with lstrip/rstrip
    // taking the whitespace next to them and single_word requiring word boundaries.
    struct Fragment {
        int32_t token;  // kNoToken for raw text
        size_t begin, end;
    };
    std::vector<Fragment> frags;
    size_t raw_begin = 0;
    for (size_t pos = 0; pos < text.size();) {
        const HfTokenizerOptions::Added* best = nullptr;
        size_t best_len = 0;
        for (size_t idx : o.by_byte[static_cast<uint8_t>(text[pos])]) {
            const HfTokenizerOptions::Added& a = o.added[idx];
            if (!parse_special && (attrs_[a.id] & kAttrControl)) continue;
            const std::string& s = texts_[a.id];
            if (s.size() <= best_len || text.compare(pos, s.size(), s) != 0) continue;
            if (a.single_word) {
                const bool left_ok = pos == 0 || !is_word_byte(static_cast<uint8_t>(text[pos - 1]));
                const size_t e = pos + s.size();
                const bool right_ok = e == text.size() || !is_word_byte(static_cast<uint8_t>(text[e]));
                if (!left_ok || !right_ok) continue;
            }
            best = &a;
            best_len = s.size();
        }
        if (best == nullptr) {
            ++pos;
            continue;
        }
        size_t start = pos;
        if (best->lstrip) {
            while (start > raw_begin && is_ws(text[start - 1])) --start;
        }
        size_t end = pos + best_len;
        if (best->rstrip) {
            while (end < text.size() && is_ws(text[end])) ++end;
        }
        if (start > raw_begin) frags.push_back({kNoToken, raw_begin, start});
        frags.push_back({best->id, start, end});
        raw_begin = pos = end;
    }
    if (raw_begin < text.size()) frags.push_back({kNoToken, raw_begin, text.size()});

    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 4);
    if (add_special && add_bos_) out.push_back(bos_id_);
    for (const Fragment& f : frags) {
        if (f.token != kNoToken) {
            out.push_back(f.token);
            continue;
        }
        std::string s(text.substr(f.begin, f.end - f.begin));
        if (o.nfc) s = nfc_normalize(s);
        if (o.byte_level) {
            if (o.prefix_space && !s.empty() && s[0] != ' ') s.insert(0, 1, ' ');
            encode_bpe(s, out);
            continue;
        }
        if (o.prepend && !s.empty()) s.insert(0, kMeta);
        if (o.replace_space) {
            std::string r;
            r.reserve(s.size() + 16);
            for (char c : s) {
                if (c == ' ')
                    r += kMeta;
                else
                    r.push_back(c);
            }
            s = std::move(r);
        }
        const bool starts_meta = s.compare(0, kMeta.size(), kMeta) == 0;
        if ((o.metaspace == HfTokenizerOptions::Metaspace::kAlways && !starts_meta) ||
            (o.metaspace == HfTokenizerOptions::Metaspace::kFirst && !starts_meta && f.begin == 0))
            s.insert(0, kMeta);
        if (!o.metaspace_split) {
            encode_hf_chars(s, out);
            continue;
        }
        // Metaspace split: each word starts at a '▁'.
        size_t begin = 0;
        for (size_t at = s.find(kMeta, 1); at != std::string::npos; at = s.find(kMeta, at + kMeta.size())) {
            encode_hf_chars(std::string_view(s).substr(begin, at - begin), out);
            begin = at;
        }
        encode_hf_chars(std::string_view(s).substr(begin), out);
    }
    if (add_special && add_eos_) out.push_back(eos_id_);
    return out;
}

void Tokenizer::encode_hf_chars(std::string_view word, std::vector<int32_t>& out) const {
    if (word.empty()) return;
    const HfTokenizerOptions& o = *hf_;
    if (ignore_merges_) {
        if (int32_t id = find_token(word); id != kNoToken && attrs_[id] != kAttrUnused) {
            out.push_back(id);
            return;
        }
    }
    struct Sym {
        int prev, next;
        int32_t id;
    };
    std::vector<Sym> syms;
    syms.reserve(word.size());
    bool prev_unk = false;
    auto push = [&](int32_t id) {
        const int idx = static_cast<int>(syms.size());
        if (!syms.empty()) syms.back().next = idx;
        syms.push_back({idx - 1, -1, id});
    };
    for (size_t off = 0; off < word.size();) {
        const size_t len = std::min(utf8_sequence_length(static_cast<uint8_t>(word[off])), word.size() - off);
        const std::string_view ch = word.substr(off, len);
        off += len;
        if (int32_t id = find_token(ch); id != kNoToken && attrs_[id] != kAttrUnused) {
            push(id);
            prev_unk = false;
            continue;
        }
        if (o.byte_fallback) {
            std::vector<int32_t> bytes;
            for (char c : ch) {
                static constexpr char kHex[] = "0123456789ABCDEF";
                const auto b = static_cast<uint8_t>(c);
                const char name[7] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>', 0};
                const int32_t id = find_token(name);
                if (id == kNoToken) break;
                bytes.push_back(id);
            }
            if (bytes.size() == ch.size()) {
                for (int32_t id : bytes) push(id);
                prev_unk = false;
                continue;
            }
        }
        if (unk_id_ == kNoToken) continue;  // the library drops the character
        if (o.fuse_unk && prev_unk) continue;
        push(unk_id_);
        prev_unk = true;
    }
    if (syms.empty()) return;

    struct Pair {
        int left;
        int32_t rank, left_id, right_id;
        bool operator<(const Pair& p) const { return rank > p.rank || (rank == p.rank && left > p.left); }
    };
    std::priority_queue<Pair> queue;
    auto try_pair = [&](int left) {
        if (left < 0 || syms[left].next < 0) return;
        const int right = syms[left].next;
        const int32_t rank = bpe_rank(texts_[syms[left].id], texts_[syms[right].id]);
        if (rank >= 0) queue.push({left, rank, syms[left].id, syms[right].id});
    };
    for (int i = 0; i < static_cast<int>(syms.size()); ++i) try_pair(i);
    while (!queue.empty()) {
        const Pair p = queue.top();
        queue.pop();
        Sym& l = syms[p.left];
        if (l.id != p.left_id || l.next < 0 || syms[l.next].id != p.right_id) continue;  // stale
        Sym& r = syms[l.next];
        const int32_t merged = find_token(texts_[l.id] + texts_[r.id]);
        if (merged == kNoToken) continue;
        l.id = merged;
        r.id = kNoToken;
        l.next = r.next;
        if (l.next >= 0) syms[l.next].prev = p.left;
        try_pair(l.prev);
        try_pair(p.left);
    }
    for (int i = 0; i != -1; i = syms[i].next) out.push_back(syms[i].id);
}

std::string Tokenizer::decode_hf(const std::vector<int32_t>& ids, bool special) const {
    const HfTokenizerOptions& o = *hf_;
    std::string out;
    if (o.byte_level) {
        // The library's ByteLevel decoder: every token (added ones too) whose characters all stand for bytes
        // becomes those bytes, any other token its UTF-8 text; the whole is then read as UTF-8 lossily.
        for (int32_t id : ids) {
            if (!valid(id) || (!special && (attrs_[id] & kAttrControl))) continue;
            const std::string& text = texts_[id];
            std::string bytes;
            bool mapped = true;
            for (uint32_t cp : utf8_to_codepoints(text)) {
                const int b = codepoint_to_byte(cp);
                if (b < 0) {
                    mapped = false;
                    break;
                }
                bytes.push_back(static_cast<char>(b));
            }
            out += mapped ? bytes : text;
        }
        return utf8_lossy(out);
    }
    std::string bytes;  // a run of byte-fallback tokens, decoded together
    auto flush = [&] {
        if (bytes.empty()) return;
        // The library's ByteFallback: a run that is not valid UTF-8 becomes one U+FFFD per byte.
        if (utf8_lossy(bytes) == bytes) {
            out += bytes;
        } else {
            for (size_t i = 0; i < bytes.size(); ++i) out += "\xEF\xBF\xBD";
        }
        bytes.clear();
    };
    bool first = true;
    for (int32_t id : ids) {
        if (!valid(id)) continue;
        const uint32_t attr = attrs_[id];
        if (!special && (attr & kAttrControl)) continue;
        if (attr & kAttrByte) {
            bytes += token_to_piece(id, true);
            first = false;
            continue;
        }
        flush();
        std::string piece = token_to_piece(id, true);
        if (first && o.strip == HfTokenizerOptions::Strip::kFirstToken && (attr & kAttrNormal))
            std::erase(piece, ' ');  // the Metaspace decoder drops every '▁' of the first token
        first = false;
        out += piece;
    }
    flush();
    if (o.strip == HfTokenizerOptions::Strip::kFirstSpace && !out.empty() && out[0] == ' ') out.erase(0, 1);
    return out;
}

}  // namespace moerig::runtime
