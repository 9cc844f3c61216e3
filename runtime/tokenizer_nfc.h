// Unicode Normalization Form C, for tokenizers whose normalizer is NFC (Hugging Face tokenizer.json).
#pragma once

#include <string>
#include <string_view>

namespace moerig::runtime {

/// NFC of UTF-8 text (canonical decomposition, canonical ordering, canonical composition, Hangul included).
/// Text below U+0300 is returned as is; invalid UTF-8 sequences become U+FFFD.
std::string nfc_normalize(std::string_view text);

}  // namespace moerig::runtime
