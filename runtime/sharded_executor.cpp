// ShardedModel: per-card state (device with budget, thread pool, KV cache of the stage, dispatcher) and
// the SPMD step every card thread runs: embed on the first stage card, per layer attention on the stage
// card, hand-off at stage boundaries, MoE through the dispatcher among the layer's participants.
#include "runtime/sharded_executor.h"

#ifdef __linux__
#include <pthread.h>
#include <sched.h>
#endif

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>

#include "formats/gguf.h"
#include "kernels/error.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "runtime/cpu_device.h"
#include "runtime/dispatcher.h"

namespace moerig::runtime {

namespace {

/// This card's (or the host's) routed experts of one layer, run one expert at a time through the engine's
/// own expert FFN (biases and gpt-oss's clamped SwiGLU included).
class CardLayerExperts final : public CardExperts {
  public:
    CardLayerExperts(const LayerWeights& layer, int64_t n_embd, kernels::ThreadPool& pool)
        : layer_(layer), n_embd_(n_embd), pool_(pool) {}
    void run_expert(int expert_idx, const float* x, int64_t num_rows, float* y) override {
        const int64_t n_ff = layer_.gate_exps.rows;
        gate_.resize(static_cast<size_t>(num_rows * n_ff));
        up_.resize(gate_.size());
        run_expert_rows(layer_, expert_idx, n_embd_,
                        ExpertRows{.x = x, .gate = gate_.data(), .up = up_.data(), .y = y, .num_rows = num_rows},
                        pool_);
    }

  private:
    const LayerWeights& layer_;
    int64_t n_embd_;
    kernels::ThreadPool& pool_;
    std::vector<float> gate_, up_;
};

}  // namespace

/// One persistent thread per card (rank 0 runs on the caller's thread), so a decode step costs a
/// wake-up per card rather than a thread start. A rank that throws aborts the communicator so no peer
/// waits for it forever; the first rank's own error is rethrown by run().
/// With one_core, every card's thread runs on one core (rank 0's, the caller's, only during run()).
class ShardedModel::CardThreads {
  public:
    CardThreads(std::vector<LocalCommunicator*> comms, bool one_core)
        : comms_(std::move(comms)), errors_(comms_.size()) {
#ifdef __linux__
        if (one_core) {
            cpu_set_t allowed;
            CPU_ZERO(&allowed);
            if (pthread_getaffinity_np(pthread_self(), sizeof(allowed), &allowed) == 0) {
                for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
                    if (CPU_ISSET(cpu, &allowed)) {
                        CPU_ZERO(&core_);
                        CPU_SET(cpu, &core_);
                        pinned_ = true;
                        break;
                    }
                }
            }
        }
#endif
        for (int r = 1; r < static_cast<int>(comms_.size()); ++r) threads_.emplace_back([this, r] { loop(r); });
    }
    ~CardThreads() {
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
        }
        start_cv_.notify_all();
        threads_.clear();  // joins
    }

    void run(const std::function<void(int)>& fn) {
        {
            std::lock_guard lock(mutex_);
            fn_ = &fn;
            remaining_ = static_cast<int>(comms_.size()) - 1;
            errors_.assign(comms_.size(), nullptr);
            aborted_.assign(comms_.size(), false);
            ++generation_;
        }
        start_cv_.notify_all();
        {
            const PinCaller pin(*this);
            call(0);
        }
        std::unique_lock lock(mutex_);
        done_cv_.wait(lock, [&] { return remaining_ == 0; });
        rethrow_rank_error(errors_, aborted_);
    }

  private:
    /// Runs the caller's thread on the card threads' core until destroyed (one_core), then where it was allowed.
    struct PinCaller {
        explicit PinCaller(const CardThreads& t) {
#ifdef __linux__
            if (t.pinned_ && pthread_getaffinity_np(pthread_self(), sizeof(saved_), &saved_) == 0)
                restore_ = pthread_setaffinity_np(pthread_self(), sizeof(t.core_), &t.core_) == 0;
#endif
        }
        ~PinCaller() {
#ifdef __linux__
            if (restore_) pthread_setaffinity_np(pthread_self(), sizeof(saved_), &saved_);
#endif
        }
        PinCaller(const PinCaller&) = delete;
        PinCaller& operator=(const PinCaller&) = delete;
#ifdef __linux__
        cpu_set_t saved_{};
#endif
        bool restore_ = false;
    };

    void call(int rank) {
        try {
            (*fn_)(rank);
        } catch (const CommunicatorAborted&) {
            std::lock_guard lock(mutex_);
            errors_[rank] = std::current_exception();
            aborted_[rank] = true;
        } catch (const std::exception& e) {
            std::lock_guard lock(mutex_);
            errors_[rank] = std::current_exception();
            comms_[rank]->abort(e.what());
        }
    }
    void loop(int rank) {
#ifdef __linux__
        if (pinned_) pthread_setaffinity_np(pthread_self(), sizeof(core_), &core_);
#endif
        uint64_t seen = 0;
        for (;;) {
            {
                std::unique_lock lock(mutex_);
                start_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
                if (stop_) return;
                seen = generation_;
            }
            call(rank);
            std::lock_guard lock(mutex_);
            if (--remaining_ == 0) done_cv_.notify_all();
        }
    }

    std::vector<LocalCommunicator*> comms_;
    std::mutex mutex_;
    std::condition_variable start_cv_, done_cv_;
    uint64_t generation_ = 0;
    int remaining_ = 0;
    bool stop_ = false;
    const std::function<void(int)>* fn_ = nullptr;
    std::vector<std::exception_ptr> errors_;
    std::vector<bool> aborted_;
#ifdef __linux__
    cpu_set_t core_{};
#endif
    bool pinned_ = false;
    std::vector<std::jthread> threads_;  // last: joined before the members they use go
};

struct ShardedModel::Card {
    std::unique_ptr<CpuDevice> device;
    std::unique_ptr<kernels::ThreadPool> pool;
    MemoryReservation weights;
    std::vector<std::unique_ptr<KvCache>> kv;  // [slot], stage cards only
    MemoryReservation kv_charge;               // every slot's cache
    std::unique_ptr<Dispatcher> dispatcher;
    std::unique_ptr<CardExpertsBackend> experts;  // options card_experts; null: experts from the mapping
    DispatchHandle handle;
    Buffer x;       // (tokens, n_embd) residual stream while this card holds it
    Buffer logits;  // output card: (rows wanted, n_vocab)
    CardShareBytes share;
    double busy_s = 0;
};

/// The engine's ExpertRunner for a stage card: routes a layer's experts through the dispatcher, or
/// runs them locally (exactly as a one-card run) when the stage card holds them all alone.
class ShardedExpertRunner final : public ExpertRunner {
  public:
    ShardedExpertRunner(const Model& model, Dispatcher& dispatcher, DispatchHandle& handle,
                        const std::vector<ExpertPlacement>& placements,
                        const std::vector<std::vector<int>>& participants, kernels::ThreadPool& pool,
                        CardExpertsBackend* backend)
        : model_(model),
          dispatcher_(dispatcher),
          handle_(handle),
          placements_(placements),
          participants_(participants),
          pool_(pool),
          backend_(backend) {}

    void run(int64_t layer_idx, const float* x, const RouterOutput& route, float* y) override {
        const LayerWeights& layer = model_.weights().layers.at(layer_idx);
        if (participants_[layer_idx].size() == 1 && backend_ == nullptr) {
            run_experts_local(layer, model_.hparams().n_embd, x, route, y, pool_);
            return;
        }
        CardLayerExperts from_mapping(layer, model_.hparams().n_embd, pool_);
        CardExperts& experts = backend_ != nullptr ? backend_->layer(layer_idx) : from_mapping;
        dispatcher_.forward(handle_, placements_[layer_idx], experts, x, route.num_tokens, route.expert_ids.data(),
                            route.weights.data(), y, participants_[layer_idx]);
    }
    bool supports_oai_experts() const override { return true; }

  private:
    const Model& model_;
    Dispatcher& dispatcher_;
    DispatchHandle& handle_;
    const std::vector<ExpertPlacement>& placements_;
    const std::vector<std::vector<int>>& participants_;
    kernels::ThreadPool& pool_;
    CardExpertsBackend* backend_;  // null: the card's experts run from the mapping
};

ShardedModel::ShardedModel(const Model& model, ShardLayout layout, const ShardedOptions& options)
    : model_(model), layout_(std::move(layout)), options_(options) {
    const ModelHParams& hp = model.hparams();
    layout_.validate(hp);
    MOERIG_CHECK(options_.num_slots > 0, ConfigError, "sharded model: num_slots must be > 0, got {}",
                 options_.num_slots);
    MOERIG_CHECK(options_.max_step_rows >= 0 && options_.max_logits_rows >= 0, ConfigError,
                 "sharded model: max_step_rows ({}) and max_logits_rows ({}) must be >= 0 (0: no limit)",
                 options_.max_step_rows, options_.max_logits_rows);
    const int n = layout_.num_cards();
    const KvOptions kv_options{.dtype = options_.kv_dtype, .max_step_rows = options_.max_step_rows};
    auto shares = card_share_bytes(model.gguf(), hp, layout_, options_.context, kv_options);
    // Every sequence slot has its own KV cache on each stage card.
    for (CardShareBytes& share : shares) share.kv_cache *= static_cast<size_t>(options_.num_slots);
    // Refuse before anything is charged or allocated.
    for (int c = 0; c < n; ++c) {
        const ShardCard& card = layout_.cards[c];
        MOERIG_CHECK(shares[c].total() <= card.budget_bytes, OutOfMemoryError,
                     "card '{}' cannot hold its share: {} needed ({} dense weights, {} experts, {} KV for {} "
                     "sequence(s) x {} positions) but its budget is {}; nothing was loaded",
                     card.name, format_bytes(shares[c].total()), format_bytes(shares[c].dense_weights),
                     format_bytes(shares[c].expert_weights), format_bytes(shares[c].kv_cache), options_.num_slots,
                     options_.context, format_bytes(card.budget_bytes));
    }
    placements_.resize(hp.n_layer);
    participants_.resize(hp.n_layer);
    for (int64_t l = 0; l < hp.n_layer; ++l) {
        if (!hp.is_moe_layer(l)) continue;
        placements_[l] = layout_.placement(l, hp.n_expert);
        participants_[l] = layout_.participants(l);
    }
    if (options_.emulate_links) {
        std::vector<LinkSpec> links;
        for (const ShardCard& c : layout_.cards) links.push_back(c.link);
        links_ = std::make_shared<LinkEmulation>(std::move(links), options_.sleep_links);
    }
    comms_ = make_local_communicators(n, links_);
    if (options_.compute_clock) {
        MOERIG_CHECK(options_.emulate_links, ConfigError, "sharded run: the compute clock needs emulated links");
        MOERIG_CHECK(options_.threads_per_card == 1, ConfigError,
                     "sharded run: the compute clock needs one thread per card (got {})", options_.threads_per_card);
        for (auto& comm : comms_) comm->enable_compute_clock();
    }
    for (int c = 0; c < n; ++c) {
        const ShardCard& sc = layout_.cards[c];
        auto card = std::make_unique<Card>();
        card->device = std::make_unique<CpuDevice>(sc.name, sc.budget_bytes, c);
        card->pool = std::make_unique<kernels::ThreadPool>(std::max(1, options_.threads_per_card));
        card->share = shares[c];
        if (options_.card_experts && hp.n_expert > 0 && !sc.host) {
            card->experts = options_.card_experts(
                CardExpertsRequest{.model = model_, .layout = layout_, .card_idx = c, .pool = *card->pool});
        }
        // Virtual cards read their tensors from the shared host mapping: the bytes are charged, not copied.
        card->weights = MemoryReservation(card->device->budget(), shares[c].dense_weights + shares[c].expert_weights,
                                          MemoryKind::kWeights);
        if (sc.layer_end > sc.layer_begin) {
            size_t kv_bytes = 0;
            for (int s = 0; s < options_.num_slots; ++s) {
                card->kv.push_back(
                    std::make_unique<KvCache>(hp, options_.context, sc.layer_begin, sc.layer_end, kv_options));
                kv_bytes += card->kv.back()->bytes();
            }
            card->kv_charge = MemoryReservation(card->device->budget(), kv_bytes, MemoryKind::kKv);
        }
        if (hp.n_expert > 0) {
            card->dispatcher = std::make_unique<Dispatcher>(*comms_[c], *card->device,
                                                            DispatchConfig{.hidden_dim = hp.n_embd,
                                                                           .top_k = static_cast<int>(hp.n_expert_used),
                                                                           .quantize_8bit = options_.quantize_8bit});
        }
        cards_.push_back(std::move(card));
    }
    std::vector<LocalCommunicator*> comm_ptrs;
    for (auto& c : comms_) comm_ptrs.push_back(c.get());
    threads_ = std::make_unique<CardThreads>(std::move(comm_ptrs), options_.compute_clock);
    n_past_.assign(static_cast<size_t>(options_.num_slots), 0);
}

ShardedModel::~ShardedModel() = default;

void ShardedModel::reset(int slot_idx) {
    MOERIG_CHECK(slot_idx >= 0 && slot_idx < num_slots(), ConfigError, "sharded reset: slot {} of {} slots", slot_idx,
                 num_slots());
    n_past_[static_cast<size_t>(slot_idx)] = 0;
}

std::vector<float> ShardedModel::eval(std::span<const int32_t> tokens, bool all_logits) {
    const SeqTokens entry{.slot_idx = 0, .tokens = tokens, .all_logits = all_logits};
    return std::move(eval(std::span<const SeqTokens>(&entry, 1)).front());
}

std::vector<std::vector<float>> ShardedModel::eval(std::span<const SeqTokens> entries) {
    // Checks the whole step before any ubatch runs: a bad step changes no slot.
    const std::vector<BatchSegment> step = plan_batch(entries, n_past_, options_.context, "sharded eval");
    const int64_t num_rows = step.back().row_begin + step.back().num_tokens;
    const int64_t limit = options_.max_step_rows > 0 ? options_.max_step_rows : num_rows;
    std::vector<std::vector<float>> out(entries.size());
    const std::vector<int64_t> n_past_before = n_past_;
    try {
        run_step(entries, limit, out);
    } catch (...) {
        // Every card thread has returned (CardThreads::run joins them before rethrowing): the communicators can
        // be recovered, and the slots go back to where they were. A ring cache that an earlier ubatch of this
        // step advanced may have overwritten rows the restored position still sees: that slot starts over.
        for (auto& comm : comms_) comm->recover();
        for (size_t s = 0; s < n_past_.size(); ++s) {
            const bool advanced = n_past_[s] != n_past_before[s];
            n_past_[s] = n_past_before[s];
            if (advanced && wraps(static_cast<int>(s))) n_past_[s] = 0;
        }
        throw;
    }
    return out;
}

bool ShardedModel::wraps(int slot_idx) const {
    for (const auto& card : cards_) {
        if (!card->kv.empty() && card->kv.at(static_cast<size_t>(slot_idx))->wraps()) return true;
    }
    return false;
}

void ShardedModel::run_step(std::span<const SeqTokens> entries, int64_t limit, std::vector<std::vector<float>>& out) {
    const int64_t n_vocab = model_.hparams().n_vocab;
    std::vector<size_t> num_done(entries.size(), 0);  // tokens of each entry already evaluated
    size_t entry_idx = 0;
    while (entry_idx < entries.size()) {
        // Next ubatch: entries' tokens in order until `limit` rows; an entry cut short continues in the next one.
        std::vector<SeqTokens> pieces;
        std::vector<size_t> piece_entry;
        int64_t rows = 0;
        while (entry_idx < entries.size() && rows < limit) {
            const SeqTokens& e = entries[entry_idx];
            const size_t take = std::min(e.tokens.size() - num_done[entry_idx], static_cast<size_t>(limit - rows));
            pieces.push_back(SeqTokens{.slot_idx = e.slot_idx,
                                       .tokens = e.tokens.subspan(num_done[entry_idx], take),
                                       .all_logits = e.all_logits});
            piece_entry.push_back(entry_idx);
            num_done[entry_idx] += take;
            rows += static_cast<int64_t>(take);
            if (num_done[entry_idx] == e.tokens.size()) ++entry_idx;
        }
        std::vector<BatchSegment> segments = plan_batch(pieces, n_past_, options_.context, "sharded eval");
        for (size_t p = 0; p < pieces.size(); ++p) {
            const size_t e = piece_entry[p];
            if (!entries[e].all_logits && num_done[e] < entries[e].tokens.size()) segments[p].num_out = 0;
        }
        const std::vector<float> logits = run_ubatch(pieces, segments);
        const float* from = logits.data();
        for (size_t p = 0; p < pieces.size(); ++p) {
            const int64_t num_values = segments[p].num_out * n_vocab;
            out[piece_entry[p]].insert(out[piece_entry[p]].end(), from, from + num_values);
            from += num_values;
        }
    }
}

std::vector<float> ShardedModel::run_ubatch(std::span<const SeqTokens> entries,
                                            std::span<const BatchSegment> segments) {
    std::vector<float> logits;
    if (options_.compute_clock) {
        // A step starts once the previous one is done everywhere (its logits chose these tokens).
        std::vector<int> all(static_cast<size_t>(layout_.num_cards()));
        for (int c = 0; c < layout_.num_cards(); ++c) all[static_cast<size_t>(c)] = c;
        links_->align(all);
    }
    threads_->run([&](int rank) { run_card(rank, entries, segments, logits); });
    for (const BatchSegment& s : segments) n_past_[static_cast<size_t>(s.slot_idx)] += s.num_tokens;
    return logits;
}

void ShardedModel::run_card(int rank, std::span<const SeqTokens> entries, std::span<const BatchSegment> segments,
                            std::vector<float>& logits) {
    const auto start = std::chrono::steady_clock::now();
    comms_[rank]->start_compute();
    const double wait_before = comms_[rank]->stats().wait_s;
    const ModelHParams& hp = model_.hparams();
    Card& card = *cards_[rank];
    Communicator& comm = *comms_[rank];
    const int64_t num_tokens = segments.back().row_begin + segments.back().num_tokens;
    const size_t x_bytes = static_cast<size_t>(num_tokens * hp.n_embd) * sizeof(float);
    const bool has_stage = layout_.cards[rank].layer_end > layout_.cards[rank].layer_begin;
    if (has_stage && card.x.num_bytes() < x_bytes) {
        card.x.reset();
        card.x = card.device->alloc(x_bytes, MemoryKind::kActivations);
    }
    float* x = card.x.as<float>();
    std::unique_ptr<ShardedExpertRunner> runner;
    if (card.dispatcher) {
        runner = std::make_unique<ShardedExpertRunner>(model_, *card.dispatcher, card.handle, placements_,
                                                       participants_, *card.pool, card.experts.get());
    }

    if (layout_.stage_card(0) == rank) embed_batch(model_, entries, x);
    for (int64_t l = 0; l < hp.n_layer; ++l) {
        const int stage = layout_.stage_card(l);
        if (l > 0 && layout_.stage_card(l - 1) != stage) {
            const int prev = layout_.stage_card(l - 1);
            if (rank == prev) comm.send(x, x_bytes, stage);
            if (rank == stage) comm.recv(x, x_bytes, prev);
        }
        const bool moe = hp.is_moe_layer(l);
        if (rank == stage) {
            model_.attention(l, x, attention_segments(segments, card.kv), *card.pool);
            model_.ffn(l, x, num_tokens, *card.pool, moe ? runner.get() : nullptr);
        } else if (moe && participants_[l].size() > 1) {
            const auto& parts = participants_[l];
            if (std::find(parts.begin(), parts.end(), rank) != parts.end()) {
                CardLayerExperts from_mapping(model_.weights().layers.at(l), hp.n_embd, *card.pool);
                CardExperts& experts = card.experts ? card.experts->layer(l) : from_mapping;
                card.dispatcher->forward(card.handle, placements_[l], experts, nullptr, 0, nullptr, nullptr, nullptr,
                                         parts);
            }
        }
    }
    if (layout_.stage_card(hp.n_layer - 1) == rank) {
        const int64_t num_out = gather_output_rows(segments, hp.n_embd, x);
        const int64_t chunk = options_.max_logits_rows > 0 ? std::min(options_.max_logits_rows, num_out) : num_out;
        const size_t logits_bytes = static_cast<size_t>(chunk * hp.n_vocab) * sizeof(float);
        if (num_out > 0 && card.logits.num_bytes() < logits_bytes) {
            card.logits.reset();
            card.logits = card.device->alloc(logits_bytes, MemoryKind::kActivations);
        }
        logits.resize(static_cast<size_t>(num_out * hp.n_vocab));
        for (int64_t row = 0; row < num_out; row += chunk) {
            const int64_t n = std::min(chunk, num_out - row);
            model_.output(x + row * hp.n_embd, n, card.logits.as<float>(), *card.pool);
            std::copy_n(card.logits.as<float>(), n * hp.n_vocab, logits.begin() + row * hp.n_vocab);
        }
    }
    comms_[rank]->account_compute();
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    card.busy_s += wall - (comm.stats().wait_s - wait_before);
}

std::vector<CardStats> ShardedModel::card_stats() const {
    std::vector<CardStats> out;
    for (int c = 0; c < layout_.num_cards(); ++c) {
        const Card& card = *cards_[c];
        const MemoryInfo mem = card.device->memory_info();
        const CommStats comm = comms_[c]->stats();
        CardStats s;
        s.name = layout_.cards[c].name;
        s.host = layout_.cards[c].host;
        s.budget_bytes = mem.budget_bytes;
        s.used_bytes = mem.used_bytes;
        s.peak_bytes = mem.peak_bytes;
        s.weights_bytes = mem.held(MemoryKind::kWeights);
        s.kv_bytes = mem.held(MemoryKind::kKv);
        s.predicted_bytes = layout_.cards[c].predicted_bytes ? layout_.cards[c].predicted_bytes : card.share.total();
        s.bytes_sent = comm.bytes_sent;
        s.bytes_received = comm.bytes_received;
        s.num_groups = comm.num_groups;
        s.busy_s = card.busy_s;
        s.modelled_link_s = comm.modelled_s;
        s.compute_clock_s = comm.compute_s;
        s.expert_backend_bytes = card.experts ? card.experts->weight_bytes() : 0;
        out.push_back(s);
    }
    return out;
}

const CardExpertsBackend* ShardedModel::card_experts(int card_idx) const {
    return cards_.at(static_cast<size_t>(card_idx))->experts.get();
}

double ShardedModel::modelled_s() const {
    if (!links_) return 0;
    double t = 0;
    for (int c = 0; c < layout_.num_cards(); ++c) t = std::max(t, links_->clock_s(c));
    return t;
}

}  // namespace moerig::runtime
