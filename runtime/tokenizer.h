// Text <-> token ids for the models moerig runs, built from a GGUF file's tokenizer.ggml.* metadata and
// matching llama.cpp token for token: SentencePiece-style (`llama`) and byte-level BPE (`gpt2`) vocabularies,
// llama.cpp's pre-tokenizer regexes per `tokenizer.ggml.pre`, special tokens matched in the text, BOS/EOS rules.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace moerig::formats {
class GgufModel;
struct GgufValue;
}  // namespace moerig::formats

namespace moerig::runtime {

class PreTokenizer;
struct HfTokenizerOptions;  // tokenizer_hf.cpp

/// Hash that lets string-keyed maps be searched with a string_view, without building a std::string.
struct StringViewHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

/// Token attributes, as llama.cpp derives them from `tokenizer.ggml.token_type` (a bit set).
enum TokenAttr : uint32_t {
    kAttrUndefined = 0,
    kAttrUnknown = 1 << 0,
    kAttrUnused = 1 << 1,
    kAttrNormal = 1 << 2,
    kAttrControl = 1 << 3,
    kAttrUserDefined = 1 << 4,
    kAttrByte = 1 << 5,
};

/// The vocabulary algorithm named by `tokenizer.ggml.model`.
enum class TokenizerKind { kSpm, kBpe };

/// One model's tokenizer. Immutable after construction; encode/decode may run from several threads.
class Tokenizer {
  public:
    static constexpr int32_t kNoToken = -1;

    /// Reads tokenizer.ggml.* from the model's metadata; FormatError names the file and key on bad metadata,
    /// UnsupportedError for tokenizer models or pre-tokenizers moerig does not implement.
    static Tokenizer from_gguf(const formats::GgufModel& model);
    /// The same from a bare metadata map (one GgufFile, fuzzing); source names the input in messages.
    static Tokenizer from_metadata(const std::map<std::string, formats::GgufValue>& kv, const std::string& source);
    /// Reads a Hugging Face tokenizer.json (and tokenizer_config.json from the same folder when present) and
    /// encodes/decodes as the `tokenizers` library does: byte-level BPE (ByteLevel, Split regexes moerig knows)
    /// and SentencePiece-style BPE (Prepend/Replace normalizer or Metaspace, byte fallback), added tokens split
    /// first, BOS/EOS from the post-processor and the config. FormatError names the file and JSON field on bad
    /// input; UnsupportedError for models, normalizers, pre-tokenizers or regexes moerig does not implement.
    /// path_or_dir: the tokenizer.json, or the checkpoint folder holding it.
    static Tokenizer from_hf_json(const std::string& path_or_dir);
    /// The same from the JSON texts; config_json may be empty (no tokenizer_config.json); source names the
    /// tokenizer.json in messages, config_source the config.
    static Tokenizer from_hf_json_text(std::string_view tokenizer_json, std::string_view config_json,
                                       const std::string& source, const std::string& config_source = {});

    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;
    ~Tokenizer();

    /// Token ids of text, as llama_tokenize(text, add_special, parse_special) returns them: add_special adds
    /// BOS/EOS by the vocabulary's rules; parse_special matches control tokens' text (user-defined tokens are
    /// always matched). Invalid UTF-8 is read as U+FFFD, as llama.cpp does.
    std::vector<int32_t> encode(std::string_view text, bool add_special = true, bool parse_special = true) const;

    /// Bytes of one token: SPM ▁ becomes a space, <0xNN> one byte, byte-level BPE is mapped back to bytes.
    /// Control and unknown tokens give their text when special is true, nothing otherwise. A piece may end
    /// inside a UTF-8 character; see Utf8Stream for streaming output.
    std::string token_to_piece(int32_t id, bool special = true) const;
    /// Concatenated pieces (special tokens rendered), without the leading space SPM adds to the first word,
    /// so that decode(encode(x, false)) == x wherever llama.cpp round-trips x.
    std::string decode(const std::vector<int32_t>& ids, bool special = true) const;

    int32_t bos_id() const { return bos_id_; }
    int32_t eos_id() const { return eos_id_; }
    int32_t unk_id() const { return unk_id_; }
    int32_t pad_id() const { return pad_id_; }
    bool add_bos() const { return add_bos_; }
    bool add_eos() const { return add_eos_; }
    /// True for tokens that end generation: EOS, EOT/EOM and the end-of-turn tokens llama.cpp knows by text.
    bool is_eog(int32_t id) const;
    bool is_control(int32_t id) const { return valid(id) && (attrs_[id] & kAttrControl) != 0; }
    size_t vocab_size() const { return texts_.size(); }
    TokenizerKind kind() const { return kind_; }
    /// `tokenizer.ggml.pre` as read ("default" when absent or for SPM).
    const std::string& pre_name() const { return pre_name_; }
    /// Raw vocabulary entry (the GGUF string, e.g. "▁the" or "Ġthe") and its attribute bits.
    const std::string& token_text(int32_t id) const;
    uint32_t token_attr(int32_t id) const;
    /// Id of an exact vocabulary string, or kNoToken.
    int32_t find_token(std::string_view text) const;
    /// True when the first piece of a decoded text loses one leading space (SPM's add_space_prefix).
    bool strips_leading_space() const { return add_space_prefix_; }
    /// True when built from a Hugging Face tokenizer.json.
    bool is_hf() const { return hf_ != nullptr; }

  private:
    Tokenizer();
    bool valid(int32_t id) const { return id >= 0 && static_cast<size_t>(id) < texts_.size(); }
    void finish_setup();
    void finish_setup_hf();
    static Tokenizer from_hf_json_checked(std::string_view tokenizer_json, std::string_view config_json,
                                          const std::string& source, const std::string& config_source);
    // Hugging Face semantics (tokenizer_hf.cpp).
    std::vector<int32_t> encode_hf(std::string_view text, bool add_special, bool parse_special) const;
    void encode_hf_chars(std::string_view word, std::vector<int32_t>& out) const;
    std::string decode_hf(const std::vector<int32_t>& ids, bool special) const;
    // Raw text between special tokens, appended to out.
    void encode_spm(std::string_view text, std::vector<int32_t>& out) const;
    void encode_bpe(std::string_view text, std::vector<int32_t>& out) const;
    int32_t spm_byte_token(uint8_t byte) const;
    int32_t bpe_rank(std::string_view left, std::string_view right) const;

    TokenizerKind kind_ = TokenizerKind::kSpm;
    std::string source_;
    std::string pre_name_ = "default";
    std::vector<std::string> texts_;  // (vocab)
    std::vector<float> scores_;       // (vocab)
    std::vector<uint32_t> attrs_;     // (vocab) TokenAttr bits
    std::unordered_map<std::string, int32_t, StringViewHash, std::equal_to<>> ids_;
    std::unordered_map<std::string, int32_t, StringViewHash, std::equal_to<>> merge_ranks_;  // "left\0right" -> rank
    std::vector<int32_t> special_ids_;  // matched in text, longest first
    std::vector<int32_t> eog_ids_;      // sorted
    std::unique_ptr<PreTokenizer> pre_;
    int32_t bos_id_ = kNoToken;
    int32_t eos_id_ = kNoToken;
    int32_t unk_id_ = kNoToken;
    int32_t pad_id_ = kNoToken;
    int32_t eot_id_ = kNoToken;
    int32_t eom_id_ = kNoToken;
    bool add_bos_ = false;
    bool add_eos_ = false;
    bool add_space_prefix_ = false;
    bool ignore_merges_ = false;
    std::shared_ptr<const HfTokenizerOptions> hf_;  // set by from_hf_json
};

}  // namespace moerig::runtime
