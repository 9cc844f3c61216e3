// NFC with tables generated from the Unicode character database (tokenizer_nfc_tables.inc, see
// tools/gen_nfc_tables.py): decompose recursively, order combining marks by class, recompose primary composites.
#include "runtime/tokenizer_nfc.h"

#include <algorithm>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "runtime/tokenizer_pretokenize.h"

namespace moerig::runtime {
namespace {

struct CccRange {
    uint32_t first, last;
    uint8_t ccc;
};
struct Decomp {
    uint32_t cp, first, second;
    bool composes;
};

#include "runtime/tokenizer_nfc_tables.inc"

constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

uint8_t ccc(uint32_t cp) {
    const auto* end = std::end(kCccRanges);
    const auto* it =
        std::upper_bound(std::begin(kCccRanges), end, cp, [](uint32_t v, const CccRange& r) { return v < r.first; });
    if (it == std::begin(kCccRanges)) return 0;
    --it;
    return cp <= it->last ? it->ccc : 0;
}

const Decomp* find_decomp(uint32_t cp) {
    const auto* end = std::end(kDecomps);
    const auto* it =
        std::lower_bound(std::begin(kDecomps), end, cp, [](const Decomp& d, uint32_t v) { return d.cp < v; });
    return it != end && it->cp == cp ? it : nullptr;
}

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
    if (cp >= kSBase && cp < kSBase + kSCount) {
        const uint32_t s = cp - kSBase;
        out.push_back(kLBase + s / kNCount);
        out.push_back(kVBase + (s % kNCount) / kTCount);
        if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
        return;
    }
    const Decomp* d = find_decomp(cp);
    if (d == nullptr) {
        out.push_back(cp);
        return;
    }
    decompose(d->first, out);
    if (d->second != 0) decompose(d->second, out);
}

const std::unordered_map<uint64_t, uint32_t>& compositions() {
    static const std::unordered_map<uint64_t, uint32_t> map = [] {
        std::unordered_map<uint64_t, uint32_t> m;
        for (const Decomp& d : kDecomps) {
            if (d.composes) m.emplace((uint64_t{d.first} << 32) | d.second, d.cp);
        }
        return m;
    }();
    return map;
}

// The primary composite of a starter and the next character, or 0.
uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
        return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
    if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
        return a + (b - kTBase);
    const auto& m = compositions();
    auto it = m.find((uint64_t{a} << 32) | b);
    return it == m.end() ? 0 : it->second;
}

}  // namespace

std::string nfc_normalize(std::string_view text) {
    // Every codepoint below U+0300 is stable under NFC and starts no composition with what follows it unless a
    // combining mark (U+0300 and up, lead byte 0xCC or higher) follows.
    if (std::none_of(text.begin(), text.end(), [](char c) { return static_cast<uint8_t>(c) >= 0xCC; }))
        return std::string(text);
    std::vector<uint32_t> cps;
    cps.reserve(text.size());
    for (uint32_t cp : utf8_to_codepoints(text)) decompose(cp, cps);
    // Canonical ordering: stable sort of each run of non-starters by combining class.
    for (size_t i = 0; i < cps.size();) {
        if (ccc(cps[i]) == 0) {
            ++i;
            continue;
        }
        size_t j = i;
        while (j < cps.size() && ccc(cps[j]) != 0) ++j;
        std::stable_sort(cps.begin() + static_cast<std::ptrdiff_t>(i), cps.begin() + static_cast<std::ptrdiff_t>(j),
                         [](uint32_t a, uint32_t b) { return ccc(a) < ccc(b); });
        i = j;
    }
    // Canonical composition.
    std::vector<uint32_t> out;
    out.reserve(cps.size());
    size_t starter = SIZE_MAX;  // index in out of the last starter
    int last_ccc = -1;          // class of the last character appended after the starter (-1: none)
    for (uint32_t cp : cps) {
        const int c = ccc(cp);
        if (starter != SIZE_MAX && (last_ccc == -1 || (last_ccc != 0 && last_ccc < c))) {
            if (uint32_t comp = compose(out[starter], cp); comp != 0) {
                out[starter] = comp;
                continue;
            }
        }
        if (c == 0) {
            starter = out.size();
            last_ccc = -1;
        } else {
            last_ccc = c;
        }
        out.push_back(cp);
    }
    std::string s;
    s.reserve(text.size() + 8);
    for (uint32_t cp : out) append_utf8(s, cp);
    return s;
}

}  // namespace moerig::runtime
