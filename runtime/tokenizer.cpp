// Tokenizer construction from GGUF metadata (llama.cpp's defaults and rules for special ids, BOS/EOS,
// end-of-generation tokens), special-token matching in the text, and token -> bytes.
#include "runtime/tokenizer.h"

#include <algorithm>

#include "formats/gguf.h"
#include "kernels/error.h"
#include "runtime/tokenizer_pretokenize.h"

namespace moerig::runtime {
namespace {

using formats::GgufType;
using formats::GgufValue;
using KvMap = std::map<std::string, GgufValue>;

const GgufValue* find(const KvMap& kv, const std::string& key) {
    auto it = kv.find(key);
    return it == kv.end() ? nullptr : &it->second;
}

const GgufValue& array_of(const KvMap& kv, const std::string& key, GgufType elem, const std::string& source,
                          const char* want) {
    const GgufValue* v = find(kv, key);
    MOERIG_CHECK(v != nullptr, FormatError, "{}: metadata key '{}' is missing", source, key);
    MOERIG_CHECK(v->type == GgufType::ARRAY && v->elem_type == elem, FormatError,
                 "{}: metadata key '{}' should be {} but is {}", source, key, want, formats::gguf_type_name(v->type));
    return *v;
}

std::optional<std::string> opt_string(const KvMap& kv, const std::string& key, const std::string& source) {
    const GgufValue* v = find(kv, key);
    if (v == nullptr) return std::nullopt;
    MOERIG_CHECK(v->type == GgufType::STRING, FormatError, "{}: metadata key '{}' should be a string but is {}", source,
                 key, formats::gguf_type_name(v->type));
    return v->s;
}

std::optional<bool> opt_bool(const KvMap& kv, const std::string& key, const std::string& source) {
    const GgufValue* v = find(kv, key);
    if (v == nullptr) return std::nullopt;
    MOERIG_CHECK(v->type == GgufType::BOOL, FormatError, "{}: metadata key '{}' should be a bool but is {}", source,
                 key, formats::gguf_type_name(v->type));
    return v->u != 0;
}

std::optional<int64_t> opt_int(const KvMap& kv, const std::string& key, const std::string& source) {
    const GgufValue* v = find(kv, key);
    if (v == nullptr) return std::nullopt;
    MOERIG_CHECK(v->is_integer(), FormatError, "{}: metadata key '{}' should be an integer but is {}", source, key,
                 formats::gguf_type_name(v->type));
    const bool is_signed =
        v->type == GgufType::I8 || v->type == GgufType::I16 || v->type == GgufType::I32 || v->type == GgufType::I64;
    if (is_signed) return v->i;
    return v->u > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(v->u);
}

uint32_t attr_from_type(int64_t t) {
    switch (t) {
        case 1:
            return kAttrNormal;
        case 2:
            return kAttrUnknown;
        case 3:
            return kAttrControl;
        case 4:
            return kAttrUserDefined;
        case 5:
            return kAttrUnused;
        case 6:
            return kAttrByte;
        default:
            return kAttrUndefined;
    }
}

// Texts by which llama.cpp recognises end-of-turn / end-of-generation tokens (llama-vocab.cpp).
constexpr std::string_view kEotTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",         "<|endoftext|>",     "<|end_of_text|>",
    "<EOT>",      "_<EOT>",     "[EOT]",   "<｜end▁of▁sentence｜>", "<end_of_utterance>"};
constexpr std::string_view kEogTexts[] = {"<|eot_id|>",
                                          "<|im_end|>",
                                          "<|end|>",
                                          "<|return|>",
                                          "<|call|>",
                                          "<|flush|>",
                                          "<|calls|>",
                                          "<end_of_turn>",
                                          "<|endoftext|>",
                                          "</s>",
                                          "<|eom_id|>",
                                          "<EOT>",
                                          "_<EOT>",
                                          "[EOT]",
                                          "[EOS]",
                                          "<|end_of_text|>",
                                          "<end_of_utterance>",
                                          "<eos>",
                                          "<turn|>",
                                          "<|tool_response>",
                                          "<｜end▁of▁sentence｜>",
                                          "[e~["};
// FIM and repo tokens llama.cpp also promotes to control (and pad/repo/sep to end-of-generation).
constexpr std::string_view kFimTexts[] = {
    "<|fim_prefix|>",  "<fim-prefix>",  "<fim_prefix>",    "<｜fim▁begin｜>", "<PRE>",           "▁<PRE>",
    "<|code_prefix|>", "<|prefix|>",    "<|fim_suffix|>",  "<fim-suffix>",    "<fim_suffix>",    "<｜fim▁hole｜>",
    "<SUF>",           "▁<SUF>",        "<|code_suffix|>", "<|suffix|>",      "<|fim_middle|>",  "<fim-middle>",
    "<fim_middle>",    "<｜fim▁end｜>", "<MID>",           "▁<MID>",          "<|code_middle|>", "<|middle|>"};
constexpr std::string_view kFimEogTexts[] = {"<|fim_pad|>", "<fim-pad>",    "<fim_pad>",     "<PAD>",
                                             "[PAD]",       "<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                             "<REPO>",      "<reponame>",   "<|file_sep|>"};

template <size_t N>
bool in(std::string_view s, const std::string_view (&list)[N]) {
    return std::find(std::begin(list), std::end(list), s) != std::end(list);
}

}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_gguf(const formats::GgufModel& model) {
    return from_metadata(model.metadata(), model.path());
}

Tokenizer Tokenizer::from_metadata(const KvMap& kv, const std::string& source) {
    Tokenizer t;
    t.source_ = source;
    const auto model = opt_string(kv, "tokenizer.ggml.model", source);
    MOERIG_CHECK(model.has_value(), FormatError, "{}: metadata key 'tokenizer.ggml.model' is missing", source);
    if (*model == "llama") {
        t.kind_ = TokenizerKind::kSpm;
        t.bos_id_ = 1;
        t.eos_id_ = 2;
        t.unk_id_ = 0;
        t.add_bos_ = true;
        t.add_space_prefix_ = true;
    } else if (*model == "gpt2") {
        t.kind_ = TokenizerKind::kBpe;
        t.bos_id_ = 11;
        t.eos_id_ = 11;
        t.pre_name_ = opt_string(kv, "tokenizer.ggml.pre", source).value_or("default");
        PreTokenizerSpec spec = pretokenizer_spec(t.pre_name_, source);
        t.ignore_merges_ = spec.ignore_merges;
        t.add_bos_ = spec.add_bos;
        t.pre_ = std::make_unique<PreTokenizer>(spec.regexes);
    } else {
        MOERIG_THROW(UnsupportedError, "{}: tokenizer.ggml.model '{}' is not supported yet (expected llama or gpt2)",
                     source, *model);
    }
    if (auto v = opt_bool(kv, "tokenizer.ggml.add_space_prefix", source)) t.add_space_prefix_ = *v;

    const GgufValue& tokens = array_of(kv, "tokenizer.ggml.tokens", GgufType::STRING, source, "an array of strings");
    const size_t num_tokens = tokens.arr.size();
    MOERIG_CHECK(num_tokens > 0 && num_tokens < (size_t{1} << 31), FormatError,
                 "{}: tokenizer.ggml.tokens has {} entries, expected 1 to 2^31-1", source, num_tokens);
    const GgufValue* scores = find(kv, "tokenizer.ggml.scores");
    if (scores != nullptr) {
        MOERIG_CHECK(scores->type == GgufType::ARRAY &&
                         (scores->elem_type == GgufType::F32 || scores->elem_type == GgufType::I32),
                     FormatError, "{}: tokenizer.ggml.scores should be an array of f32 or i32", source);
        MOERIG_CHECK(scores->arr.size() >= num_tokens, FormatError,
                     "{}: tokenizer.ggml.scores has {} entries but there are {} tokens", source, scores->arr.size(),
                     num_tokens);
    }
    const GgufValue* types = find(kv, "tokenizer.ggml.token_type");
    if (types != nullptr) {
        MOERIG_CHECK(types->type == GgufType::ARRAY && types->elem_type == GgufType::I32, FormatError,
                     "{}: tokenizer.ggml.token_type should be an array of i32", source);
        MOERIG_CHECK(types->arr.size() >= num_tokens, FormatError,
                     "{}: tokenizer.ggml.token_type has {} entries but there are {} tokens", source, types->arr.size(),
                     num_tokens);
    }
    t.texts_.resize(num_tokens);
    t.scores_.assign(num_tokens, 0.f);
    t.attrs_.assign(num_tokens, kAttrNormal);
    t.ids_.reserve(num_tokens * 2);
    for (size_t i = 0; i < num_tokens; ++i) {
        std::string text = tokens.arr[i].s;
        if (text.empty()) text = "[EMPTY_" + std::to_string(i) + "]";  // llama.cpp's stand-in
        auto [it, fresh] = t.ids_.emplace(text, static_cast<int32_t>(i));
        MOERIG_CHECK(fresh, FormatError, "{}: tokenizer.ggml.tokens[{}] repeats token {} (text '{}')", source, i,
                     it->second, text);
        t.texts_[i] = std::move(text);
        if (scores != nullptr) {
            const GgufValue& s = scores->arr[i];
            t.scores_[i] = s.type == GgufType::F32 ? static_cast<float>(s.f) : static_cast<float>(s.i);
        }
        if (types != nullptr) t.attrs_[i] = attr_from_type(types->arr[i].i);
    }

    if (t.kind_ == TokenizerKind::kBpe) {
        const GgufValue& merges =
            array_of(kv, "tokenizer.ggml.merges", GgufType::STRING, source, "an array of strings");
        t.merge_ranks_.reserve(merges.arr.size() * 2);
        for (size_t i = 0; i < merges.arr.size(); ++i) {
            const std::string& m = merges.arr[i].s;
            const size_t pos = m.find(' ', 1);
            std::string key =
                pos == std::string::npos ? std::string(1, '\0') : m.substr(0, pos) + '\0' + m.substr(pos + 1);
            t.merge_ranks_.emplace(std::move(key), static_cast<int32_t>(i));  // first occurrence wins
        }
    }

    // Special ids: defaults above, dropped when out of range; metadata overrides when in range.
    auto special = [&](const char* key, int32_t& id) {
        if (id >= 0 && static_cast<size_t>(id) >= num_tokens) id = kNoToken;
        if (auto v = opt_int(kv, key, source); v && *v >= 0 && static_cast<uint64_t>(*v) < num_tokens)
            id = static_cast<int32_t>(*v);
    };
    special("tokenizer.ggml.bos_token_id", t.bos_id_);
    special("tokenizer.ggml.eos_token_id", t.eos_id_);
    special("tokenizer.ggml.unknown_token_id", t.unk_id_);
    special("tokenizer.ggml.padding_token_id", t.pad_id_);
    special("tokenizer.ggml.eot_token_id", t.eot_id_);
    special("tokenizer.ggml.eom_token_id", t.eom_id_);
    if (auto v = opt_bool(kv, "tokenizer.ggml.add_bos_token", source)) t.add_bos_ = *v;
    if (auto v = opt_bool(kv, "tokenizer.ggml.add_eos_token", source)) t.add_eos_ = *v;
    MOERIG_CHECK(!t.add_bos_ || t.bos_id_ != kNoToken, FormatError,
                 "{}: the vocabulary adds a BOS token but has no valid tokenizer.ggml.bos_token_id", source);
    MOERIG_CHECK(!t.add_eos_ || t.eos_id_ != kNoToken, FormatError,
                 "{}: the vocabulary adds an EOS token but has no valid tokenizer.ggml.eos_token_id", source);
    t.finish_setup();
    return t;
}

void Tokenizer::finish_setup() {
    // llama.cpp recognises end-of-turn, FIM and end-of-generation tokens by their text and makes them control
    // tokens (so they are matched in the text). It scans a hash map and keeps the first EOT it meets; we take the
    // lowest id, which agrees whenever a vocabulary has one such token.
    std::vector<int32_t> eog;
    for (size_t i = 0; i < texts_.size(); ++i) {
        const std::string& text = texts_[i];
        const auto id = static_cast<int32_t>(i);
        if (in(text, kEotTexts)) {
            if (eot_id_ == kNoToken) eot_id_ = id;
            attrs_[i] |= kAttrControl;
        }
        if (text == "<|eom_id|>") {
            if (eom_id_ == kNoToken) eom_id_ = id;
            attrs_[i] |= kAttrControl;
        }
        if (in(text, kFimTexts)) attrs_[i] |= kAttrControl;
        if (in(text, kFimEogTexts)) {
            attrs_[i] |= kAttrControl;
            eog.push_back(id);
        }
        if (in(text, kEogTexts)) {
            attrs_[i] |= kAttrControl;
            eog.push_back(id);
        }
        if ((attrs_[i] & kAttrControl) && text.find("unused") != std::string::npos) attrs_[i] |= kAttrUnused;
        // gpt-oss: always rendered
        if (text == "<|channel|>" || text == "<|message|>" || text == "<|start|>" || text == "<|constrain|>")
            attrs_[i] = kAttrUserDefined;
    }
    for (int32_t id : {eos_id_, eot_id_, eom_id_}) {
        if (id != kNoToken) eog.push_back(id);
    }
    auto has_text = [&](std::string_view s) {
        return std::any_of(eog.begin(), eog.end(), [&](int32_t id) { return texts_[id] == s; });
    };
    // o200k_harmony / solar-open: "<|end|>" ends a message, not the generation.
    if (has_text("<|end|>") &&
        ((has_text("<|return|>") && has_text("<|call|>")) || (has_text("<|calls|>") && has_text("<|flush|>")))) {
        const int32_t end_id = find_token("<|end|>");
        std::erase(eog, end_id);
        attrs_[end_id] = kAttrUserDefined;
    }
    std::sort(eog.begin(), eog.end());
    eog.erase(std::unique(eog.begin(), eog.end()), eog.end());
    eog_ids_ = std::move(eog);

    for (size_t i = 0; i < texts_.size(); ++i) {
        if (attrs_[i] & (kAttrControl | kAttrUserDefined | kAttrUnknown))
            special_ids_.push_back(static_cast<int32_t>(i));
    }
    std::stable_sort(special_ids_.begin(), special_ids_.end(),
                     [&](int32_t a, int32_t b) { return texts_[a].size() > texts_[b].size(); });
}

void Tokenizer::finish_setup_hf() {
    // Hugging Face vocabularies: only added tokens are matched in the text (encode_hf), and attributes stay as
    // tokenizer.json gives them; end of generation is the EOS token plus the added tokens llama.cpp would treat
    // as end-of-turn / end-of-generation by their text.
    std::vector<int32_t> eog;
    for (size_t i = 0; i < texts_.size(); ++i) {
        if (!(attrs_[i] & (kAttrControl | kAttrUserDefined))) continue;
        const std::string& text = texts_[i];
        const auto id = static_cast<int32_t>(i);
        if (in(text, kEotTexts) && eot_id_ == kNoToken) eot_id_ = id;
        if (text == "<|eom_id|>" && eom_id_ == kNoToken) eom_id_ = id;
        if (in(text, kEogTexts) || in(text, kFimEogTexts)) eog.push_back(id);
    }
    for (int32_t id : {eos_id_, eot_id_, eom_id_}) {
        if (id != kNoToken) eog.push_back(id);
    }
    auto has_text = [&](std::string_view s) {
        return std::any_of(eog.begin(), eog.end(), [&](int32_t id) { return texts_[id] == s; });
    };
    if (has_text("<|end|>") &&
        ((has_text("<|return|>") && has_text("<|call|>")) || (has_text("<|calls|>") && has_text("<|flush|>")))) {
        std::erase(eog, find_token("<|end|>"));
    }
    std::sort(eog.begin(), eog.end());
    eog.erase(std::unique(eog.begin(), eog.end()), eog.end());
    eog_ids_ = std::move(eog);
}

bool Tokenizer::is_eog(int32_t id) const {
    return std::binary_search(eog_ids_.begin(), eog_ids_.end(), id);
}

const std::string& Tokenizer::token_text(int32_t id) const {
    MOERIG_CHECK(valid(id), Error, "{}: token id {} is outside the vocabulary of {} tokens", source_, id,
                 texts_.size());
    return texts_[id];
}

uint32_t Tokenizer::token_attr(int32_t id) const {
    return valid(id) ? attrs_[id] : kAttrUndefined;
}

int32_t Tokenizer::find_token(std::string_view text) const {
    auto it = ids_.find(text);
    return it == ids_.end() ? kNoToken : it->second;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
    if (hf_) return encode_hf(text, add_special, parse_special);
    // Split the text at special tokens, longest first, leftmost occurrences, as llama.cpp's
    // tokenizer_st_partition does. A fragment is either raw text [begin, end) or a token id.
    struct Fragment {
        int32_t token;  // kNoToken for raw text
        size_t begin, end;
    };
    std::vector<Fragment> frags;
    if (!text.empty()) frags.push_back({kNoToken, 0, text.size()});
    for (int32_t sid : special_ids_) {
        if (!parse_special && (attrs_[sid] & (kAttrControl | kAttrUnknown))) continue;
        const std::string& st = texts_[sid];
        std::vector<Fragment> next;
        next.reserve(frags.size() + 4);
        for (const Fragment& f : frags) {
            if (f.token != kNoToken) {
                next.push_back(f);
                continue;
            }
            size_t pos = f.begin;
            while (pos < f.end) {
                const size_t hit = text.substr(0, f.end).find(st, pos);
                if (hit == std::string_view::npos) break;
                if (hit > pos) next.push_back({kNoToken, pos, hit});
                next.push_back({sid, 0, 0});
                pos = hit + st.size();
            }
            if (pos < f.end) next.push_back({kNoToken, pos, f.end});
        }
        frags = std::move(next);
    }

    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 4);
    if (add_special && add_bos_) out.push_back(bos_id_);
    bool prev_special = true;  // SPM: a space is added before the first word and after special tokens
    for (const Fragment& f : frags) {
        if (f.token != kNoToken) {
            out.push_back(f.token);
            prev_special = true;
            continue;
        }
        const std::string_view raw = text.substr(f.begin, f.end - f.begin);
        if (kind_ == TokenizerKind::kSpm) {
            std::string s;
            s.reserve(raw.size() + 8);
            if (add_space_prefix_ && prev_special) s = "\xE2\x96\x81";
            for (char c : raw) {
                if (c == ' ')
                    s += "\xE2\x96\x81";
                else
                    s.push_back(c);
            }
            encode_spm(s, out);
        } else {
            encode_bpe(raw, out);
        }
        prev_special = false;
    }
    if (add_special && add_eos_) out.push_back(eos_id_);
    return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool special) const {
    if (!valid(id)) return {};
    const uint32_t attr = attrs_[id];
    const std::string& text = texts_[id];
    if (attr & (kAttrControl | kAttrUnknown)) return special ? text : std::string();
    if (attr & kAttrUserDefined) return text;
    if (kind_ == TokenizerKind::kSpm) {
        if (attr & kAttrNormal) {
            std::string out;
            out.reserve(text.size());
            for (size_t i = 0; i < text.size(); ++i) {
                if (text.compare(i, 3, "\xE2\x96\x81") == 0) {
                    out.push_back(' ');
                    i += 2;
                } else {
                    out.push_back(text[i]);
                }
            }
            return out;
        }
        if (attr & kAttrByte) {
            // "<0xNN>"
            auto hex = [](char c) {
                return c >= '0' && c <= '9'   ? c - '0'
                       : c >= 'A' && c <= 'F' ? c - 'A' + 10
                       : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                              : -1;
            };
            if (text.size() == 6 && text.compare(0, 3, "<0x") == 0 && text[5] == '>' && hex(text[3]) >= 0 &&
                hex(text[4]) >= 0) {
                return std::string(1, static_cast<char>(hex(text[3]) * 16 + hex(text[4])));
            }
            return {};
        }
        return {};
    }
    if (attr & kAttrNormal) {
        std::string out;
        out.reserve(text.size());
        for (uint32_t cp : utf8_to_codepoints(text)) {
            const int b = codepoint_to_byte(cp);
            if (b >= 0)
                out.push_back(static_cast<char>(b));
            else
                append_utf8(out, cp);  // not byte-level: pass through
        }
        return out;
    }
    return {};
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool special) const {
    if (hf_) return decode_hf(ids, special);
    std::string out;
    bool first = true;
    for (int32_t id : ids) {
        std::string piece = token_to_piece(id, special);
        if (first && add_space_prefix_ && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
        first = false;
        out += piece;
    }
    return out;
}

}  // namespace moerig::runtime
