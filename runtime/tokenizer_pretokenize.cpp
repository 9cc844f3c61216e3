// Pre-tokenizer regex lists (facts taken from llama.cpp's llama-vocab.cpp, per `tokenizer.ggml.pre`) and the
// splitter that runs them. llama.cpp runs std::regex over codepoints in which non-ASCII whitespace has been
// replaced by \v; we do the same substitution and run PCRE2 (UTF mode, ASCII \s) on each word in turn.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "runtime/tokenizer_pretokenize.h"

#include <pcre2.h>

#include <algorithm>
#include <array>

#include "kernels/error.h"

namespace moerig::runtime {
namespace {

constexpr const char* kGpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
constexpr const char* kLlama3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kQwen2 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kQwen35 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| "
    "?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kDeepseekLlmLetters =
    "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\"
    "x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\"
    "x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}"
    "-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{"
    "1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}"
    "\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1F"
    "B4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\"
    "x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113"
    "}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{21"
    "39}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x"
    "{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"
    "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{F"
    "F21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{"
    "10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+";
constexpr const char* kDeepseek3 =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
    "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kGpt4o =
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'["
    "mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'["
    "rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!"
    "\\S)|\\s+";
constexpr const char* kTekken =
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-"
    "z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

bool is_one_of(std::string_view name, std::initializer_list<std::string_view> names) {
    return std::find(names.begin(), names.end(), name) != names.end();
}

pcre2_code* compile(const std::string& regex) {
    int err = 0;
    PCRE2_SIZE err_off = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(regex.data()), regex.size(),
                                     PCRE2_UTF | PCRE2_DOLLAR_ENDONLY, &err, &err_off, nullptr);
    if (code == nullptr) {
        std::array<PCRE2_UCHAR, 256> msg{};
        pcre2_get_error_message(err, msg.data(), msg.size());
        MOERIG_THROW(Error, "pre-tokenizer regex '{}' does not compile at offset {}: {}", regex, err_off,
                     reinterpret_cast<const char*>(msg.data()));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // best effort: the interpreter is used where JIT is missing
    return code;
}

}  // namespace

PreTokenizerSpec pretokenizer_spec(std::string_view name, const std::string& source) {
    PreTokenizerSpec s;
    if (name.empty() || name == "default") {
        s.regexes = {"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2, "\\p{N}+", "[0-9][0-9][0-9]"};
    } else if (is_one_of(name,
                         {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"})) {
        s.regexes = {kLlama3};
        s.ignore_merges = true;
        s.add_bos = true;
    } else if (is_one_of(name, {"dbrx", "smaug-bpe"})) {
        s.regexes = {kLlama3};
    } else if (name == "deepseek-llm") {
        s.regexes = {"[\r\n]",
                     kDeepseekLlmLetters,
                     "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
                     "\\s+$",
                     "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+",
                     "\\p{N}+"};
    } else if (name == "deepseek-coder") {
        s.regexes = {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+",
                     "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}"};
    } else if (name == "deepseek-v3") {
        s.regexes = {"\\p{N}{1,3}", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+", kDeepseek3};
    } else if (name == "falcon") {
        s.regexes = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", kGpt2, "[0-9][0-9][0-9]"};
    } else if (is_one_of(name, {"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"})) {
        s.regexes = {"\\p{N}", kGpt2};
    } else if (is_one_of(name,
                         {"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0",
                          "mellum", "jina-v1-en", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais", "trillion"})) {
        s.regexes = {kGpt2};
    } else if (is_one_of(name, {"qwen2", "deepseek-r1-qwen", "stablelm2", "hunyuan"})) {
        s.regexes = {kQwen2};
    } else if (name == "qwen35") {
        s.regexes = {kQwen35};
    } else if (is_one_of(name, {"gpt-4o", "llama4"})) {
        s.regexes = {kGpt4o};
    } else if (name == "tekken") {
        s.regexes = {kTekken};
        s.ignore_merges = true;
        s.add_bos = true;
    } else {
        MOERIG_THROW(UnsupportedError, "{}: tokenizer.ggml.pre '{}' is not supported yet", source, name);
    }
    return s;
}

const char* const kHfByteLevelRegex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

const char* hf_split_regex(std::string_view pattern) {
    // Hugging Face runs these with Oniguruma; PCRE2 reads them the same way (\s on the non-ASCII whitespace that
    // PreTokenizer::split maps to \v, \p{..} classes, (?i:..) groups), which the HF fixtures check.
    static constexpr const char* kKnown[] = {
        // GPT-2 (as a Split)
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
        // Llama-3
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
        "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
        "\\s+(?!\\S)|\\s+",
        // Qwen2 / Qwen3
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
        "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!"
        "\\S)|\\s+",
        // DeepSeek-V3 (three splits)
        "\\p{N}{1,3}",
        "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
        kDeepseek3,
        // gpt-oss (o200k_harmony) and GPT-4o (o200k_base)
        "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|"
        "'ll|'d)?"
        "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'"
        "m|'ll|'d)"
        "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        // Mistral tekken: the o200k construction without contractions, single digits
        "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}"
        "]?[\\p{Lu}"
        "\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| "
        "?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!"
        "\\S)|\\s+",
    };
    for (const char* k : kKnown) {
        if (pattern == k) return k;
    }
    return nullptr;
}

PreTokenizer::PreTokenizer(const std::vector<std::string>& regexes) {
    try {
        for (const auto& r : regexes) codes_.push_back(compile(r));
    } catch (...) {
        for (void* c : codes_) pcre2_code_free(static_cast<pcre2_code*>(c));
        throw;
    }
}

PreTokenizer::~PreTokenizer() {
    for (void* c : codes_) pcre2_code_free(static_cast<pcre2_code*>(c));
}

size_t utf8_sequence_length(uint8_t lead) {
    static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return kLen[lead >> 4];
}

std::vector<uint32_t> utf8_to_codepoints(std::string_view s) {
    // Lenient like llama.cpp: overlong forms are accepted; a bad lead or missing continuation is one U+FFFD.
    std::vector<uint32_t> out;
    out.reserve(s.size());
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    const size_t n = s.size();
    auto cont = [&](size_t i) { return i < n && (p[i] & 0xC0) == 0x80; };
    size_t i = 0;
    while (i < n) {
        const uint8_t b = p[i];
        if (b < 0x80) {
            out.push_back(b);
            i += 1;
        } else if ((b & 0xE0) == 0xC0 && cont(i + 1)) {
            out.push_back(((b & 0x1Fu) << 6) | (p[i + 1] & 0x3Fu));
            i += 2;
        } else if ((b & 0xF0) == 0xE0 && cont(i + 1) && cont(i + 2)) {
            out.push_back(((b & 0x0Fu) << 12) | ((p[i + 1] & 0x3Fu) << 6) | (p[i + 2] & 0x3Fu));
            i += 3;
        } else if ((b & 0xF8) == 0xF0 && cont(i + 1) && cont(i + 2) && cont(i + 3)) {
            const uint32_t cp =
                ((b & 0x07u) << 18) | ((p[i + 1] & 0x3Fu) << 12) | ((p[i + 2] & 0x3Fu) << 6) | (p[i + 3] & 0x3Fu);
            out.push_back(cp <= 0x10FFFF ? cp : 0xFFFD);
            i += 4;
        } else {
            out.push_back(0xFFFD);
            i += 1;
        }
    }
    return out;
}

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

namespace {
// Printable Latin-1 bytes stand for themselves; the other 68 bytes take 256, 257, ... in byte order.
bool byte_is_printable(uint32_t b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
}
}  // namespace

uint32_t byte_to_codepoint(uint8_t b) {
    if (byte_is_printable(b)) return b;
    uint32_t n = 0;
    for (uint32_t i = 0; i < b; ++i) n += !byte_is_printable(i);
    return 256 + n;
}

int codepoint_to_byte(uint32_t cp) {
    if (cp < 256) return byte_is_printable(cp) ? static_cast<int>(cp) : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t n = cp - 256;
    for (uint32_t b = 0; b < 256; ++b) {
        if (!byte_is_printable(b) && n-- == 0) return static_cast<int>(b);
    }
    return -1;
}

bool is_llama_whitespace(uint32_t cp) {
    if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680) return true;
    if (cp >= 0x2000 && cp <= 0x200A) return true;
    return cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

std::vector<std::string> PreTokenizer::split(std::string_view text) const {
    const std::vector<uint32_t> cpts = utf8_to_codepoints(text);
    // The subject PCRE2 sees: non-ASCII whitespace as \v (llama.cpp's fallback, so \s stays ASCII-only) and
    // codepoints PCRE2 rejects in UTF mode (surrogates from lenient decoding) as U+FFFD. One codepoint each,
    // so codepoint indices carry over; byte_at maps them to subject bytes.
    std::string subject;
    subject.reserve(text.size() + 8);
    std::vector<uint32_t> byte_at(cpts.size() + 1);
    for (size_t i = 0; i < cpts.size(); ++i) {
        byte_at[i] = static_cast<uint32_t>(subject.size());
        uint32_t cp = cpts[i];
        if (cp > 0x7F && is_llama_whitespace(cp)) cp = 0x0B;
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
        append_utf8(subject, cp);
    }
    byte_at[cpts.size()] = static_cast<uint32_t>(subject.size());
    auto cp_at = [&](size_t byte) {
        return static_cast<size_t>(std::lower_bound(byte_at.begin(), byte_at.end(), byte) - byte_at.begin());
    };

    std::vector<size_t> words = {cpts.size()};  // word lengths in codepoints
    pcre2_match_data* md = pcre2_match_data_create(4, nullptr);
    MOERIG_CHECK(md != nullptr, Error, "pre-tokenizer: out of memory");
    try {
        for (void* code_ptr : codes_) {
            auto* code = static_cast<pcre2_code*>(code_ptr);
            std::vector<size_t> next;
            next.reserve(words.size() * 2);
            size_t word_start = 0;
            for (size_t len : words) {
                const size_t b0 = byte_at[word_start];
                const size_t b1 = byte_at[word_start + len];
                const auto* sub = reinterpret_cast<PCRE2_SPTR>(subject.data() + b0);
                size_t pos = 0;   // bytes into the word
                size_t prev = 0;  // end of the last match, bytes
                while (pos < b1 - b0) {
                    const int rc = pcre2_match(code, sub, b1 - b0, pos, PCRE2_NO_UTF_CHECK, md, nullptr);
                    if (rc == PCRE2_ERROR_NOMATCH) break;
                    MOERIG_CHECK(rc >= 0, Error, "pre-tokenizer: PCRE2 match failed with code {}", rc);
                    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
                    size_t ms = ov[0], me = ov[1];
                    if (me == ms) {  // no list regex matches empty; guard against looping anyway
                        pos = byte_at[cp_at(b0 + ms) + 1] - b0;
                        continue;
                    }
                    if (ms > prev) next.push_back(cp_at(b0 + ms) - cp_at(b0 + prev));
                    next.push_back(cp_at(b0 + me) - cp_at(b0 + ms));
                    prev = pos = me;
                }
                if (prev < b1 - b0) next.push_back(cp_at(b1) - cp_at(b0 + prev));
                word_start += len;
            }
            words = std::move(next);
        }
    } catch (...) {
        pcre2_match_data_free(md);
        throw;
    }
    pcre2_match_data_free(md);

    std::vector<std::string> out;
    out.reserve(words.size());
    size_t start = 0;
    for (size_t len : words) {
        std::string w;
        for (size_t i = start; i < start + len; ++i) append_utf8(w, cpts[i]);
        out.push_back(std::move(w));
        start += len;
    }
    return out;
}

}  // namespace moerig::runtime
