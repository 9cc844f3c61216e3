// BatchSession::eval and the step layout it shares with the sharded executor: entries are concatenated into one
// residual stream; per layer each segment attends over its own slot's cache, then one ffn call covers all rows.
#include "runtime/batch.h"

#include <algorithm>
#include <cstring>

#include "kernels/error.h"

namespace moerig::runtime {

std::vector<BatchSegment> plan_batch(std::span<const SeqTokens> entries, std::span<const int64_t> n_past,
                                     int64_t context, const char* who) {
    MOERIG_CHECK(!entries.empty(), ConfigError, "{}: a step needs at least one sequence", who);
    const auto num_slots = static_cast<int>(n_past.size());
    std::vector<bool> used(n_past.size(), false);
    std::vector<BatchSegment> segments;
    int64_t row = 0;
    for (size_t i = 0; i < entries.size(); ++i) {
        const SeqTokens& e = entries[i];
        MOERIG_CHECK(e.slot_idx >= 0 && e.slot_idx < num_slots, ConfigError,
                     "{}: entry {} names slot {}, but there are {} slots", who, i, e.slot_idx, num_slots);
        MOERIG_CHECK(!used[static_cast<size_t>(e.slot_idx)], ConfigError,
                     "{}: slot {} appears twice in one step (entry {}); give its tokens as one entry", who, e.slot_idx,
                     i);
        used[static_cast<size_t>(e.slot_idx)] = true;
        const auto num_tokens = static_cast<int64_t>(e.tokens.size());
        MOERIG_CHECK(num_tokens > 0, ConfigError, "{}: entry {} (slot {}) has no tokens", who, i, e.slot_idx);
        const int64_t past = n_past[static_cast<size_t>(e.slot_idx)];
        MOERIG_CHECK(past + num_tokens <= context, ConfigError,
                     "{}: slot {} is full: {} cached + {} new tokens exceed the context of {} positions", who,
                     e.slot_idx, past, num_tokens, context);
        segments.push_back(BatchSegment{.slot_idx = e.slot_idx,
                                        .row_begin = row,
                                        .num_tokens = num_tokens,
                                        .n_past = past,
                                        .num_out = e.all_logits ? num_tokens : 1});
        row += num_tokens;
    }
    return segments;
}

std::vector<AttentionSegment> attention_segments(std::span<const BatchSegment> segments,
                                                 std::span<const std::unique_ptr<KvCache>> kv) {
    std::vector<AttentionSegment> out;
    out.reserve(segments.size());
    for (const BatchSegment& s : segments) {
        out.push_back(AttentionSegment{.row_begin = s.row_begin,
                                       .num_tokens = s.num_tokens,
                                       .n_past = s.n_past,
                                       .kv = kv[static_cast<size_t>(s.slot_idx)].get()});
    }
    return out;
}

void embed_batch(const Model& model, std::span<const SeqTokens> entries, float* x) {
    const int64_t n_embd = model.hparams().n_embd;
    for (const SeqTokens& e : entries) {
        model.embed(e.tokens, x);
        x += static_cast<int64_t>(e.tokens.size()) * n_embd;
    }
}

int64_t gather_output_rows(std::span<const BatchSegment> segments, int64_t n_embd, float* x) {
    int64_t out_row = 0;
    for (const BatchSegment& s : segments) {
        const int64_t from_row = s.row_begin + s.num_tokens - s.num_out;
        // Rows only move towards the front, and segments are in order, so memmove never clobbers a later source.
        if (from_row != out_row) {
            std::memmove(x + out_row * n_embd, x + from_row * n_embd,
                         static_cast<size_t>(s.num_out * n_embd) * sizeof(float));
        }
        out_row += s.num_out;
    }
    return out_row;
}

BatchSession::BatchSession(const Model& model, int num_slots, int64_t context, kernels::ThreadPool* pool,
                           const KvOptions& kv)
    : model_(model), pool_(pool ? pool : &model.pool()), context_(context) {
    MOERIG_CHECK(num_slots > 0, ConfigError, "a batch session needs at least one sequence slot, got {}", num_slots);
    for (int s = 0; s < num_slots; ++s) kv_.push_back(std::make_unique<KvCache>(model.hparams(), context, 0, -1, kv));
    n_past_.assign(static_cast<size_t>(num_slots), 0);
}

void BatchSession::reset(int slot_idx) {
    MOERIG_CHECK(slot_idx >= 0 && slot_idx < num_slots(), ConfigError, "reset: slot {} of {} slots", slot_idx,
                 num_slots());
    n_past_[static_cast<size_t>(slot_idx)] = 0;
}

std::vector<std::vector<float>> BatchSession::eval(std::span<const SeqTokens> entries) {
    const int64_t step = kv_.front()->max_step_rows();
    const bool one_step = step == 0 || std::all_of(entries.begin(), entries.end(), [&](const SeqTokens& e) {
                              return static_cast<int64_t>(e.tokens.size()) <= step;
                          });
    if (one_step) return eval_step(entries);
    plan_batch(entries, n_past_, context_, "batch eval");  // refuse a bad step before any part of it runs
    // Sliding-window rings hold `step` new positions per sequence: run the entries `step` tokens at a time.
    std::vector<std::vector<float>> out(entries.size());
    for (size_t begin = 0;; begin += static_cast<size_t>(step)) {
        std::vector<SeqTokens> part;
        std::vector<size_t> part_entry;
        for (size_t e = 0; e < entries.size(); ++e) {
            const std::span<const int32_t> tokens = entries[e].tokens;
            if (tokens.size() <= begin) continue;
            const size_t n = std::min(static_cast<size_t>(step), tokens.size() - begin);
            part.push_back(SeqTokens{entries[e].slot_idx, tokens.subspan(begin, n), entries[e].all_logits});
            part_entry.push_back(e);
        }
        if (part.empty()) break;
        std::vector<std::vector<float>> logits = eval_step(part);
        for (size_t i = 0; i < part.size(); ++i) {
            std::vector<float>& o = out[part_entry[i]];
            if (part[i].all_logits) {
                o.insert(o.end(), logits[i].begin(), logits[i].end());
            } else {
                o = std::move(logits[i]);  // the last part's last token is the entry's
            }
        }
    }
    return out;
}

std::vector<std::vector<float>> BatchSession::eval_step(std::span<const SeqTokens> entries) {
    const ModelHParams& hp = model_.hparams();
    const std::vector<BatchSegment> segments = plan_batch(entries, n_past_, context_, "batch eval");
    const int64_t num_tokens = segments.back().row_begin + segments.back().num_tokens;
    std::vector<float> x(static_cast<size_t>(num_tokens * hp.n_embd));
    embed_batch(model_, entries, x.data());
    const std::vector<AttentionSegment> attn = attention_segments(segments, kv_);
    for (int64_t il = 0; il < hp.n_layer; ++il) {
        model_.attention(il, x.data(), attn, *pool_);
        model_.ffn(il, x.data(), num_tokens, *pool_, experts_);
    }
    for (const BatchSegment& s : segments) n_past_[static_cast<size_t>(s.slot_idx)] += s.num_tokens;

    const int64_t num_out = gather_output_rows(segments, hp.n_embd, x.data());
    std::vector<float> logits(static_cast<size_t>(num_out * hp.n_vocab));
    model_.output(x.data(), num_out, logits.data(), *pool_);
    std::vector<std::vector<float>> out;
    const float* from = logits.data();
    for (const BatchSegment& s : segments) {
        out.emplace_back(from, from + s.num_out * hp.n_vocab);
        from += s.num_out * hp.n_vocab;
    }
    return out;
}

}  // namespace moerig::runtime
