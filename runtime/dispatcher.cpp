// Dispatcher: replica choice and packing on the sending card, expert grouping on the computing card,
// and the reverse exchange with the weighted combine. A row on the wire is
// [payload: f32 x hidden | f32 scale + i8 x hidden][i32 expert id x top_k][f32 weight x top_k].
#include "runtime/dispatcher.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/error.h"

namespace moerig::runtime {

namespace {

size_t align4(size_t n) {
    return (n + 3) & ~size_t{3};
}

void quantize_row(const float* x, int64_t n, std::byte* out) {
    float absmax = 0;
    for (int64_t i = 0; i < n; ++i) absmax = std::max(absmax, std::fabs(x[i]));
    const float scale = absmax / 127.f;
    const float inv = absmax > 0 ? 127.f / absmax : 0.f;
    std::memcpy(out, &scale, sizeof(float));
    auto* q = reinterpret_cast<int8_t*>(out + sizeof(float));
    for (int64_t i = 0; i < n; ++i) q[i] = static_cast<int8_t>(std::lrintf(std::clamp(x[i] * inv, -127.f, 127.f)));
}

void dequantize_row(const std::byte* in, int64_t n, float* x) {
    float scale;
    std::memcpy(&scale, in, sizeof(float));
    const auto* q = reinterpret_cast<const int8_t*>(in + sizeof(float));
    for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(q[i]) * scale;
}

}  // namespace

ExpertPlacement ExpertPlacement::all_on(int num_experts, int rank) {
    ExpertPlacement p;
    p.replicas.assign(num_experts, std::vector<int>{rank});
    return p;
}

ExpertPlacement ExpertPlacement::round_robin(int num_experts, int num_ranks) {
    ExpertPlacement p;
    for (int e = 0; e < num_experts; ++e) p.replicas.push_back({e % num_ranks});
    return p;
}

void ExpertPlacement::validate(int num_ranks) const {
    for (int e = 0; e < num_experts(); ++e) {
        const auto& reps = replicas[e];
        MOERIG_CHECK(!reps.empty(), ConfigError, "expert placement: expert {} has no copy on any card", e);
        for (size_t i = 0; i < reps.size(); ++i) {
            MOERIG_CHECK(reps[i] >= 0 && reps[i] < num_ranks, ConfigError,
                         "expert placement: expert {} placed on card {}, but there are {} cards", e, reps[i],
                         num_ranks);
            for (size_t j = 0; j < i; ++j) {
                MOERIG_CHECK(reps[j] != reps[i], ConfigError, "expert placement: expert {} has two copies on card {}",
                             e, reps[i]);
            }
        }
    }
}

Dispatcher::Dispatcher(Communicator& comm, Device& device, DispatchConfig config)
    : comm_(comm), device_(device), config_(config) {
    MOERIG_CHECK(config_.hidden_dim > 0 && config_.top_k > 0, ConfigError,
                 "dispatcher on card '{}': hidden_dim {} and top_k {} must be positive", device.name(),
                 config_.hidden_dim, config_.top_k);
    MOERIG_CHECK(device.host_accessible(), UnsupportedError,
                 "dispatcher on card '{}': the host dispatcher needs host-accessible buffers", device.name());
    payload_bytes_ = config_.quantize_8bit ? align4(sizeof(float) + config_.hidden_dim)
                                           : sizeof(float) * static_cast<size_t>(config_.hidden_dim);
    row_bytes_ = payload_bytes_ + config_.top_k * (sizeof(int32_t) + sizeof(float));
}

void Dispatcher::ensure(Buffer& buffer, size_t num_bytes) {
    if (buffer.num_bytes() >= num_bytes) return;
    const MemoryKind kind =
        &buffer == &expert_in_buf_ || &buffer == &expert_out_buf_ ? MemoryKind::kActivations : MemoryKind::kComm;
    buffer.reset();  // free first: growing must not need old + new at once
    buffer = device_.alloc(std::max(num_bytes, num_bytes + num_bytes / 4), kind);
}

void Dispatcher::dispatch(DispatchHandle& h, const ExpertPlacement& placement, const float* hidden, int64_t num_tokens,
                          const int32_t* topk_ids, const float* topk_weights, std::span<const int> participants) {
    const int num_ranks = comm_.size();
    const int me = comm_.rank();
    const int k = config_.top_k;
    const int64_t dim = config_.hidden_dim;
    MOERIG_CHECK(placement.num_experts() > 0, ConfigError, "dispatch on card '{}': the expert placement is empty",
                 device_.name());
    placement.validate(num_ranks);
    stats_ = DispatchStats{};
    h.num_tokens = num_tokens;
    h.experts_done = false;
    h.send_rows.assign(num_ranks, 0);

    // Layout: the computing rank of every (token, slot), least-loaded replica first.
    std::vector<size_t> load(num_ranks, 0);
    std::vector<int> dest(static_cast<size_t>(num_tokens) * k);
    for (int64_t t = 0; t < num_tokens; ++t) {
        for (int j = 0; j < k; ++j) {
            const int32_t e = topk_ids[t * k + j];
            MOERIG_CHECK(e >= 0 && e < placement.num_experts(), ConfigError,
                         "dispatch on card '{}': token {} slot {} routes to expert {}, expected 0..{}", device_.name(),
                         t, j, e, placement.num_experts() - 1);
            int best = -1;
            for (int r : placement.replicas[e]) {
                if (best < 0 || load[r] < load[best] ||
                    (load[r] == load[best] && (r == me || (best != me && r < best))))
                    best = r;
            }
            dest[t * k + j] = best;
            ++load[best];
        }
    }
    // One row per (token, rank): count, then pack by rank and token.
    auto first_slot_for = [&](int64_t t, int j) {
        for (int i = 0; i < j; ++i)
            if (dest[t * k + i] == dest[t * k + j]) return false;
        return true;
    };
    for (int64_t t = 0; t < num_tokens; ++t)
        for (int j = 0; j < k; ++j)
            if (first_slot_for(t, j)) ++h.send_rows[dest[t * k + j]];
    std::vector<size_t> cursor(num_ranks, 0);
    size_t num_send_rows = 0;
    for (int r = 0; r < num_ranks; ++r) {
        cursor[r] = num_send_rows;
        num_send_rows += h.send_rows[r];
    }
    h.row_token_idx.assign(num_send_rows, 0);
    ensure(send_buf_, num_send_rows * row_bytes_);
    auto* send = send_buf_.as<std::byte>();
    for (int64_t t = 0; t < num_tokens; ++t) {
        for (int j = 0; j < k; ++j) {
            if (!first_slot_for(t, j)) continue;
            const int r = dest[t * k + j];
            const size_t row = cursor[r]++;
            h.row_token_idx[row] = static_cast<int32_t>(t);
            std::byte* at = send + row * row_bytes_;
            if (config_.quantize_8bit) {
                quantize_row(hidden + t * dim, dim, at);
            } else {
                std::memcpy(at, hidden + t * dim, dim * sizeof(float));
            }
            auto* ids = reinterpret_cast<int32_t*>(at + payload_bytes_);
            auto* weights = reinterpret_cast<float*>(ids + k);
            for (int i = 0; i < k; ++i) {
                const bool here = dest[t * k + i] == r;
                ids[i] = here ? topk_ids[t * k + i] : -1;
                weights[i] = here ? topk_weights[t * k + i] : 0.f;
            }
        }
    }

    // Exchange row counts, then rows.
    h.recv_rows.assign(num_ranks, 0);
    std::vector<size_t> count_bytes(num_ranks, participants.empty() ? sizeof(size_t) : 0);
    for (int p : participants) {
        MOERIG_CHECK(p >= 0 && p < num_ranks, ConfigError,
                     "dispatch on card '{}': participant {} is not one of {} ranks", device_.name(), p, num_ranks);
        count_bytes[p] = sizeof(size_t);
    }
    for (int r = 0; r < num_ranks; ++r) {
        MOERIG_CHECK(count_bytes[r] != 0 || h.send_rows[r] == 0, ConfigError,
                     "dispatch on card '{}': {} rows routed to card {}, which is not a participant", device_.name(),
                     h.send_rows[r], r);
    }
    // all_to_all_v packs peers contiguously, skipping empty ones: pack the participants' counts.
    std::vector<size_t> counts_out, counts_in;
    for (int r = 0; r < num_ranks; ++r)
        if (count_bytes[r] != 0) counts_out.push_back(h.send_rows[r]);
    counts_in.resize(counts_out.size());
    comm_.all_to_all_v(counts_out.data(), count_bytes, counts_in.data(), count_bytes);
    for (int r = 0, i = 0; r < num_ranks; ++r)
        if (count_bytes[r] != 0) h.recv_rows[r] = counts_in[i++];
    h.num_recv_rows = 0;
    for (size_t n : h.recv_rows) h.num_recv_rows += static_cast<int64_t>(n);
    ensure(recv_buf_, h.num_recv_rows * row_bytes_);
    std::vector<size_t> send_bytes(num_ranks), recv_bytes(num_ranks);
    for (int r = 0; r < num_ranks; ++r) {
        send_bytes[r] = h.send_rows[r] * row_bytes_;
        recv_bytes[r] = h.recv_rows[r] * row_bytes_;
        if (r != me) {
            stats_.rows_sent_remote += h.send_rows[r];
            stats_.bytes_sent += send_bytes[r];
            stats_.bytes_received += recv_bytes[r];
        }
    }
    comm_.all_to_all_v(send_buf_.data(), send_bytes, recv_buf_.data(), recv_bytes);
}

void Dispatcher::run_experts(DispatchHandle& h, CardExperts& experts) {
    const int k = config_.top_k;
    const int64_t dim = config_.hidden_dim;
    const int64_t num_rows = h.num_recv_rows;
    const auto* recv = recv_buf_.as<const std::byte>();
    auto row_ids = [&](int64_t row) {
        return reinterpret_cast<const int32_t*>(recv + row * row_bytes_ + payload_bytes_);
    };

    // Group (row, slot) entries by expert with a counting sort; rows stay in arrival order per expert.
    int32_t max_id = -1;
    for (int64_t row = 0; row < num_rows; ++row)
        for (int j = 0; j < k; ++j) max_id = std::max(max_id, row_ids(row)[j]);
    expert_count_.assign(max_id + 1, 0);
    for (int64_t row = 0; row < num_rows; ++row)
        for (int j = 0; j < k; ++j)
            if (row_ids(row)[j] >= 0) ++expert_count_[row_ids(row)[j]];
    expert_begin_.assign(max_id + 2, 0);
    for (int32_t e = 0; e <= max_id; ++e) expert_begin_[e + 1] = expert_begin_[e] + expert_count_[e];
    expert_entry_.resize(expert_begin_[max_id + 1]);
    std::vector<int64_t> fill(expert_begin_.begin(), expert_begin_.end() - 1);
    for (int64_t row = 0; row < num_rows; ++row)
        for (int j = 0; j < k; ++j)
            if (row_ids(row)[j] >= 0) expert_entry_[fill[row_ids(row)[j]]++] = row * k + j;

    ensure(out_rows_buf_, num_rows * dim * sizeof(float));
    float* out_rows = out_rows_buf_.as<float>();
    std::fill(out_rows, out_rows + num_rows * dim, 0.f);
    int64_t max_count = 0;
    for (int64_t c : expert_count_) max_count = std::max(max_count, c);
    ensure(expert_in_buf_, max_count * dim * sizeof(float));
    ensure(expert_out_buf_, max_count * dim * sizeof(float));
    float* x = expert_in_buf_.as<float>();
    float* y = expert_out_buf_.as<float>();

    for (int32_t e = 0; e <= max_id; ++e) {
        const int64_t n = expert_count_[e];
        if (n == 0) continue;
        const int64_t* entries = expert_entry_.data() + expert_begin_[e];
        for (int64_t i = 0; i < n; ++i) {
            const std::byte* row = recv + (entries[i] / k) * row_bytes_;
            if (config_.quantize_8bit) {
                dequantize_row(row, dim, x + i * dim);
            } else {
                std::memcpy(x + i * dim, row, dim * sizeof(float));
            }
        }
        experts.run_expert(e, x, n, y);
        for (int64_t i = 0; i < n; ++i) {
            const int64_t row = entries[i] / k;
            const int slot = static_cast<int>(entries[i] % k);
            const float w = reinterpret_cast<const float*>(row_ids(row) + k)[slot];
            float* acc = out_rows + row * dim;
            const float* yi = y + i * dim;
            for (int64_t d = 0; d < dim; ++d) acc[d] += w * yi[d];
        }
    }
    h.experts_done = true;
}

void Dispatcher::combine(DispatchHandle& h, float* out, bool accumulate) {
    MOERIG_CHECK(h.experts_done, ConfigError,
                 "combine on card '{}' before run_experts: peers would wait for this card's expert results",
                 device_.name());
    const int num_ranks = comm_.size();
    const int me = comm_.rank();
    const int64_t dim = config_.hidden_dim;
    const size_t row_f32 = dim * sizeof(float);
    size_t num_send_rows = h.row_token_idx.size();
    ensure(back_buf_, num_send_rows * row_f32);
    std::vector<size_t> send_bytes(num_ranks), recv_bytes(num_ranks);
    for (int r = 0; r < num_ranks; ++r) {
        send_bytes[r] = h.recv_rows[r] * row_f32;  // results go back to where the rows came from
        recv_bytes[r] = h.send_rows[r] * row_f32;
        if (r != me) {
            stats_.bytes_sent += send_bytes[r];
            stats_.bytes_received += recv_bytes[r];
        }
    }
    comm_.all_to_all_v(out_rows_buf_.data(), send_bytes, back_buf_.data(), recv_bytes);

    if (!accumulate) std::fill(out, out + h.num_tokens * dim, 0.f);
    const float* back = back_buf_.as<const float>();
    for (size_t row = 0; row < num_send_rows; ++row) {
        float* o = out + static_cast<int64_t>(h.row_token_idx[row]) * dim;
        const float* b = back + row * dim;
        for (int64_t d = 0; d < dim; ++d) o[d] += b[d];
    }
    h.experts_done = false;
}

void Dispatcher::forward(DispatchHandle& h, const ExpertPlacement& placement, CardExperts& experts, const float* hidden,
                         int64_t num_tokens, const int32_t* topk_ids, const float* topk_weights, float* out,
                         std::span<const int> participants) {
    dispatch(h, placement, hidden, num_tokens, topk_ids, topk_weights, participants);
    run_experts(h, experts);
    combine(h, out);
}

}  // namespace moerig::runtime
