// SentencePiece-style encoding as llama.cpp does it for `tokenizer.ggml.model = llama`: start from UTF-8
// characters, repeatedly merge the adjacent pair whose concatenation is the highest-scoring vocabulary token
// (leftmost on ties), then emit tokens, re-splitting pieces that are not tokens and falling back to <0xNN>.
#include <queue>
#include <string>
#include <unordered_map>

#include "runtime/tokenizer.h"
#include "runtime/tokenizer_pretokenize.h"

namespace moerig::runtime {
namespace {

struct Symbol {
    int prev, next;
    size_t begin, len;  // bytes of the text
};

struct Bigram {
    int left, right;
    float score;
    size_t len;
    // priority_queue pops the greatest: highest score, then leftmost.
    bool operator<(const Bigram& o) const { return score < o.score || (score == o.score && left > o.left); }
};

}  // namespace

int32_t Tokenizer::spm_byte_token(uint8_t byte) const {
    static constexpr char kHex[] = "0123456789ABCDEF";
    const char name[7] = {'<', '0', 'x', kHex[byte >> 4], kHex[byte & 15], '>', 0};
    int32_t id = find_token(name);
    if (id == kNoToken) id = find_token(std::string(1, static_cast<char>(byte)));
    return id == kNoToken ? unk_id_ : id;
}

void Tokenizer::encode_spm(std::string_view text, std::vector<int32_t>& out) const {
    if (text.empty()) return;
    std::vector<Symbol> syms;
    syms.reserve(text.size());
    for (size_t off = 0; off < text.size();) {
        const size_t len = std::min(utf8_sequence_length(static_cast<uint8_t>(text[off])), text.size() - off);
        const int idx = static_cast<int>(syms.size());
        syms.push_back({idx - 1, off + len == text.size() ? -1 : idx + 1, off, len});
        off += len;
    }
    std::priority_queue<Bigram> queue;
    // Which pair of symbols formed a piece, for re-splitting pieces that are not tokens themselves.
    std::unordered_map<std::string_view, std::pair<int, int>> formed_by;
    auto try_pair = [&](int left, int right) {
        if (left < 0 || right < 0) return;
        const std::string_view piece = text.substr(syms[left].begin, syms[left].len + syms[right].len);
        const int32_t id = find_token(piece);
        if (id == kNoToken) return;
        queue.push({left, right, scores_[id], piece.size()});
        formed_by[piece] = {left, right};
    };
    for (int i = 1; i < static_cast<int>(syms.size()); ++i) try_pair(i - 1, i);
    while (!queue.empty()) {
        const Bigram b = queue.top();
        queue.pop();
        Symbol& l = syms[b.left];
        Symbol& r = syms[b.right];
        if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;  // stale
        l.len += r.len;
        r.len = 0;
        l.next = r.next;
        if (r.next >= 0) syms[r.next].prev = b.left;
        try_pair(l.prev, b.left);
        try_pair(b.left, l.next);
    }
    // Emits one symbol; recursion depth is bounded by the number of merges that formed it.
    auto emit = [&](auto&& self, int idx) -> void {
        const std::string_view piece = text.substr(syms[idx].begin, syms[idx].len);
        const int32_t id = find_token(piece);
        if (id != kNoToken) {
            out.push_back(id);
            return;
        }
        auto it = formed_by.find(piece);
        if (it == formed_by.end()) {
            for (char c : piece) out.push_back(spm_byte_token(static_cast<uint8_t>(c)));
            return;
        }
        self(self, it->second.first);
        self(self, it->second.second);
    };
    for (int i = 0; i != -1; i = syms[i].next) emit(emit, i);
}

}  // namespace moerig::runtime
