// Streaming text output: token pieces can end inside a UTF-8 character (byte tokens, byte-level BPE), so a
// stream holds back an incomplete tail until the rest arrives and never emits a partial character.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace moerig::runtime {

class Tokenizer;

/// True when s holds whole UTF-8 characters only: every lead byte followed by all its continuation bytes. A check
/// of structure, as lenient as llama.cpp's reading of UTF-8: overlong forms and surrogates pass (Utf8Stream's
/// output, being strict, always does).
bool is_whole_utf8(std::string_view s);

/// Buffers bytes and releases only whole, valid UTF-8 characters. Bytes that can never form a character
/// (stray continuation bytes, bad leads, a lead cut off by a non-continuation) come out as U+FFFD.
class Utf8Stream {
  public:
    /// Appends bytes; returns the text that is now complete (possibly empty).
    std::string push(std::string_view bytes);
    /// Ends the stream: an incomplete tail becomes U+FFFD.
    std::string finish();
    /// Bytes held back, waiting for the rest of a character (0 to 3).
    size_t pending() const { return pending_.size(); }

  private:
    std::string pending_;
};

/// Turns generated token ids into text as they arrive: pieces with special tokens rendered or not, SPM's
/// leading space of the first piece dropped, whole characters only.
class DetokenizerStream {
  public:
    explicit DetokenizerStream(const Tokenizer& tokenizer, bool special = false)
        : tokenizer_(tokenizer), special_(special) {}
    std::string push(int32_t id);
    std::string finish() { return utf8_.finish(); }

  private:
    const Tokenizer& tokenizer_;
    bool special_;
    bool first_ = true;
    Utf8Stream utf8_;
};

}  // namespace moerig::runtime
