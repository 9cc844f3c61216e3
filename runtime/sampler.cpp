// Sampler: the steps of llama.cpp's sampler chain (src/llama-sampler.cpp) re-stated: same order, same
// float/double arithmetic and the same RNG use, so a seed picks the same token as llama.cpp would.
#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

namespace moerig::runtime {

namespace {

struct Candidates {
    std::vector<TokenCandidate> data;
    bool sorted = false;
};

void sort_desc(Candidates& c) {
    if (c.sorted) return;
    std::stable_sort(c.data.begin(), c.data.end(),
                     [](const TokenCandidate& a, const TokenCandidate& b) { return a.logit > b.logit; });
    c.sorted = true;
}

void apply_penalty(Candidates& c, const std::deque<int32_t>& history, const SamplerParams& p) {
    if (p.repeat_penalty == 1.0f || p.repeat_last_n == 0 || history.empty()) return;
    std::unordered_map<int32_t, int> count;
    for (int32_t t : history) ++count[t];
    for (auto& cand : c.data) {
        if (!count.count(cand.id)) continue;
        // Multiply negative logits, divide positive ones, so a penalty always lowers the token.
        if (cand.logit <= 0) {
            cand.logit *= p.repeat_penalty;
        } else {
            cand.logit /= p.repeat_penalty;
        }
    }
    c.sorted = false;
}

void apply_top_k(Candidates& c, int k) {
    if (k <= 0) return;
    k = std::min<int>(k, static_cast<int>(c.data.size()));
    sort_desc(c);
    c.data.resize(static_cast<size_t>(k));
}

/// Probabilities of the current candidates in their current order (llama_sampler_softmax_impl).
void softmax_probs(Candidates& c) {
    float max_l = c.data[0].logit;
    for (const auto& x : c.data) max_l = std::max(max_l, x.logit);
    float sum = 0.0f;
    for (auto& x : c.data) {
        x.p = std::exp(x.logit - max_l);
        sum += x.p;
    }
    for (auto& x : c.data) x.p /= sum;
}

void apply_top_p(Candidates& c, float p) {
    if (p >= 1.0f || c.data.empty()) return;
    softmax_probs(c);
    sort_desc(c);
    float cum = 0.0f;
    size_t last = c.data.size();
    for (size_t i = 0; i < c.data.size(); ++i) {
        cum += c.data[i].p;
        if (cum >= p) {
            last = i + 1;
            break;
        }
    }
    c.data.resize(last);
}

void apply_min_p(Candidates& c, float p) {
    if (p <= 0.0f || c.data.empty()) return;
    float max_l = c.data[0].logit;
    for (const auto& x : c.data) max_l = std::max(max_l, x.logit);
    const float min_logit = max_l + std::log(p);  // keeps p_i >= p * p_max
    std::vector<TokenCandidate> kept;
    for (const auto& x : c.data) {
        if (x.logit >= min_logit) kept.push_back(x);
    }
    c.data = std::move(kept);
}

void apply_temp(Candidates& c, float temp) {
    for (auto& x : c.data) x.logit /= temp;
}

Candidates make_candidates(std::span<const float> logits) {
    Candidates c;
    c.data.resize(logits.size());
    for (size_t i = 0; i < logits.size(); ++i) c.data[i] = {static_cast<int32_t>(i), logits[i], 0.0f};
    return c;
}

}  // namespace

Sampler::Sampler(const SamplerParams& params) : params_(params), rng_(static_cast<uint32_t>(params.seed)) {}

void Sampler::reset() {
    history_.clear();
    rng_.seed(static_cast<uint32_t>(params_.seed));
}

void Sampler::accept(int32_t token) {
    if (params_.repeat_last_n <= 0) return;
    history_.push_back(token);
    while (static_cast<int>(history_.size()) > params_.repeat_last_n) history_.pop_front();
}

std::vector<TokenCandidate> Sampler::candidates(std::span<const float> logits) const {
    Candidates c = make_candidates(logits);
    apply_penalty(c, history_, params_);
    apply_top_k(c, params_.top_k);
    apply_top_p(c, params_.top_p);
    apply_min_p(c, params_.min_p);
    if (params_.temp > 0.0f) apply_temp(c, params_.temp);
    return std::move(c.data);
}

int32_t Sampler::sample(std::span<const float> logits) {
    if (params_.temp <= 0.0f) {
        Candidates c = make_candidates(logits);
        apply_penalty(c, history_, params_);
        int32_t best = 0;
        for (size_t i = 1; i < c.data.size(); ++i) {
            if (c.data[i].logit > c.data[static_cast<size_t>(best)].logit) best = static_cast<int32_t>(i);
        }
        return c.data[static_cast<size_t>(best)].id;
    }
    const auto cand = candidates(logits);
    std::uniform_real_distribution<double> dist(0.0, 1.0);
    if (cand.size() == 1) {
        dist(rng_);  // one draw per token, as llama.cpp, so later draws stay aligned
        return cand[0].id;
    }
    float max_l = cand[0].logit;
    for (const auto& x : cand) max_l = std::max(max_l, x.logit);
    std::vector<float> p(cand.size());
    double sum = 0.0;
    for (size_t i = 0; i < cand.size(); ++i) {
        p[i] = std::exp(cand[i].logit - max_l);
        sum += p[i];
    }
    const double target = sum * dist(rng_);
    double run = 0.0;
    for (size_t i = 0; i < cand.size(); ++i) {
        run += p[i];
        if (run >= target) return cand[i].id;
    }
    return cand.back().id;
}

}  // namespace moerig::runtime
