// Utf8Stream: hold back incomplete UTF-8 tails; DetokenizerStream: pieces of generated tokens through it;
// is_whole_utf8: the structural check of whole characters.
#include "runtime/utf8_stream.h"

#include "runtime/tokenizer.h"

namespace moerig::runtime {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

// Length of the sequence a lead byte starts, 0 when it cannot start one.
size_t lead_length(uint8_t b) {
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) return 3;
    if (b >= 0xF0 && b <= 0xF4) return 4;
    return 0;
}

// Whether the second byte is allowed after lead (rules out overlong forms, surrogates, > U+10FFFF).
bool second_ok(uint8_t lead, uint8_t b) {
    if ((b & 0xC0) != 0x80) return false;
    if (lead == 0xE0) return b >= 0xA0;
    if (lead == 0xED) return b <= 0x9F;
    if (lead == 0xF0) return b >= 0x90;
    if (lead == 0xF4) return b <= 0x8F;
    return true;
}

}  // namespace

bool is_whole_utf8(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        const auto b = static_cast<unsigned char>(s[i]);
        const size_t len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > s.size()) return false;
        for (size_t k = 1; k < len; ++k)
            if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
        i += len;
    }
    return true;
}

std::string Utf8Stream::push(std::string_view bytes) {
    pending_.append(bytes);
    std::string out;
    out.reserve(pending_.size());
    size_t i = 0;
    const size_t n = pending_.size();
    const auto* p = reinterpret_cast<const uint8_t*>(pending_.data());
    while (i < n) {
        const size_t len = lead_length(p[i]);
        if (len == 0) {
            out += kReplacement;
            ++i;
            continue;
        }
        // Check the continuation bytes we have; an invalid one ends the broken sequence here.
        size_t good = 1;
        while (good < len && i + good < n && (good == 1 ? second_ok(p[i], p[i + 1]) : (p[i + good] & 0xC0) == 0x80))
            ++good;
        if (good == len) {
            out.append(pending_, i, len);
            i += len;
        } else if (i + good == n) {
            break;  // incomplete so far: wait for more bytes
        } else {
            out += kReplacement;
            i += good;
        }
    }
    pending_.erase(0, i);
    return out;
}

std::string Utf8Stream::finish() {
    std::string out = push({});
    if (!pending_.empty()) out += kReplacement;
    pending_.clear();
    return out;
}

std::string DetokenizerStream::push(int32_t id) {
    std::string piece = tokenizer_.token_to_piece(id, special_);
    if (first_ && !piece.empty()) {
        if (tokenizer_.strips_leading_space() && piece[0] == ' ') piece.erase(0, 1);
        first_ = false;
    }
    return utf8_.push(piece);
}

}  // namespace moerig::runtime
