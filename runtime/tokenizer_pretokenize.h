// Pre-tokenisation for byte-level BPE: the regex list llama.cpp applies for each `tokenizer.ggml.pre`, run
// with PCRE2 so that the words handed to BPE are the ones llama.cpp produces (same splitting of unmatched
// runs, same treatment of non-ASCII whitespace and invalid UTF-8).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moerig::runtime {

/// What one `tokenizer.ggml.pre` value means to llama.cpp.
struct PreTokenizerSpec {
    std::vector<std::string> regexes;  // applied in order, each splitting the previous words further
    bool ignore_merges = false;        // a word that is itself a token is emitted whole (llama3)
    bool add_bos = false;              // default for tokenizer.ggml.add_bos_token when the key is absent
};

/// The spec for a pre-tokenizer name ("" and "default" give llama.cpp's default); throws UnsupportedError
/// naming source and the value for names moerig does not know.
PreTokenizerSpec pretokenizer_spec(std::string_view name, const std::string& source);

/// The regex GPT-2's byte-level pre-tokenizer applies (Hugging Face ByteLevel with use_regex).
extern const char* const kHfByteLevelRegex;
/// For the pattern of a Hugging Face Split pre-tokenizer (its JSON text), the PCRE2 regex moerig runs for it when
/// it is one the models moerig supports use (GPT-2, Llama-3, Qwen2/3, DeepSeek-V3, o200k); nullptr otherwise.
const char* hf_split_regex(std::string_view pattern);

/// Compiled regex list. Thread-safe: match state is per call.
class PreTokenizer {
  public:
    explicit PreTokenizer(const std::vector<std::string>& regexes);
    ~PreTokenizer();
    PreTokenizer(const PreTokenizer&) = delete;
    PreTokenizer& operator=(const PreTokenizer&) = delete;

    /// Splits text into words; each word is valid UTF-8 (invalid input bytes became U+FFFD).
    std::vector<std::string> split(std::string_view text) const;

  private:
    std::vector<void*> codes_;  // pcre2_code_8*, one per regex
};

/// Codepoints of UTF-8 text; an invalid or truncated sequence gives U+FFFD and resumes at the next byte.
std::vector<uint32_t> utf8_to_codepoints(std::string_view text);
/// Appends the UTF-8 encoding of cp.
void append_utf8(std::string& out, uint32_t cp);
/// Length of the UTF-8 sequence a lead byte starts (1 for stray continuation bytes, as llama.cpp counts).
size_t utf8_sequence_length(uint8_t lead);
/// GPT-2's byte-level alphabet: the codepoint that stands for byte b in BPE vocabularies, and back
/// (-1 when cp stands for no byte).
uint32_t byte_to_codepoint(uint8_t b);
int codepoint_to_byte(uint32_t cp);
/// True for the codepoints llama.cpp treats as whitespace (\s in its regexes).
bool is_llama_whitespace(uint32_t cp);

}  // namespace moerig::runtime
