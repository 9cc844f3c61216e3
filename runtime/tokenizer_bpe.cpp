// Byte-level BPE encoding as llama.cpp does it for `tokenizer.ggml.model = gpt2`: pre-tokenize into words,
// write each word's bytes in GPT-2's byte alphabet, merge adjacent symbols by merge rank (lowest first,
// leftmost on ties), and emit each final symbol's token (or its single-byte tokens when it has none).
#include <array>
#include <queue>
#include <string>

#include "runtime/tokenizer.h"
#include "runtime/tokenizer_pretokenize.h"

namespace moerig::runtime {
namespace {

struct Symbol {
    int prev, next;
    size_t begin, len;  // bytes of the encoded word
};

struct Bigram {
    int left, right;
    int32_t rank;
    size_t len;
    // priority_queue pops the greatest: lowest rank, then leftmost.
    bool operator<(const Bigram& o) const { return rank > o.rank || (rank == o.rank && left > o.left); }
};

const std::array<std::string, 256>& byte_alphabet() {
    static const std::array<std::string, 256> table = [] {
        std::array<std::string, 256> t;
        for (int b = 0; b < 256; ++b) append_utf8(t[b], byte_to_codepoint(static_cast<uint8_t>(b)));
        return t;
    }();
    return table;
}

}  // namespace

int32_t Tokenizer::bpe_rank(std::string_view left, std::string_view right) const {
    thread_local std::string key;  // reused: this runs once per candidate pair
    key.assign(left).push_back('\0');
    key.append(right);
    auto it = merge_ranks_.find(key);
    return it == merge_ranks_.end() ? -1 : it->second;
}

void Tokenizer::encode_bpe(std::string_view text, std::vector<int32_t>& out) const {
    const auto& alphabet = byte_alphabet();
    std::string word;
    std::vector<Symbol> syms;
    for (const std::string& raw : pre_->split(text)) {
        word.clear();
        for (char c : raw) word += alphabet[static_cast<uint8_t>(c)];
        if (ignore_merges_) {
            if (int32_t id = find_token(word); id != kNoToken) {
                out.push_back(id);
                continue;
            }
        }
        syms.clear();
        for (size_t off = 0; off < word.size();) {
            const size_t len = std::min(utf8_sequence_length(static_cast<uint8_t>(word[off])), word.size() - off);
            const int idx = static_cast<int>(syms.size());
            syms.push_back({idx - 1, off + len == word.size() ? -1 : idx + 1, off, len});
            off += len;
        }
        const std::string_view w(word);
        std::priority_queue<Bigram> queue;
        auto try_pair = [&](int left, int right) {
            if (left < 0 || right < 0) return;
            const int32_t rank =
                bpe_rank(w.substr(syms[left].begin, syms[left].len), w.substr(syms[right].begin, syms[right].len));
            if (rank >= 0) queue.push({left, right, rank, syms[left].len + syms[right].len});
        };
        for (int i = 1; i < static_cast<int>(syms.size()); ++i) try_pair(i - 1, i);
        while (!queue.empty()) {
            const Bigram b = queue.top();
            queue.pop();
            Symbol& l = syms[b.left];
            Symbol& r = syms[b.right];
            // Stale when either side changed since the pair was queued; symbols only grow, so lengths tell.
            if (l.len == 0 || r.len == 0 || l.len + r.len != b.len || l.next != b.right) continue;
            l.len += r.len;
            r.len = 0;
            l.next = r.next;
            if (r.next >= 0) syms[r.next].prev = b.left;
            try_pair(l.prev, b.left);
            try_pair(b.left, l.next);
        }
        for (int i = 0; i != -1 && !syms.empty(); i = syms[i].next) {
            const std::string_view piece = w.substr(syms[i].begin, syms[i].len);
            if (int32_t id = find_token(piece); id != kNoToken) {
                out.push_back(id);
                continue;
            }
            for (char c : piece) {
                if (int32_t id = find_token(std::string_view(&c, 1)); id != kNoToken) out.push_back(id);
            }
        }
    }
}

}  // namespace moerig::runtime
