// Local expert execution for one MoE layer. Token-expert assignments are bucketed by expert; each bucket
// runs gate and up as one gathered product per expert (weights streamed once), SwiGLU, then down, and the
// results are mixed back per token in selection order, as llama.cpp's build_moe_ffn sums them. Optional
// per-expert biases and gpt-oss's clamped SwiGLU follow the same graph.
#include "runtime/moe.h"

#include "kernels/error.h"
#include "kernels/ops.h"

namespace moerig::runtime {

void run_expert_rows(const LayerWeights& l, int64_t e, int64_t n_embd, const ExpertRows& r, kernels::ThreadPool& pool) {
    const int64_t n_ff = l.gate_exps.rows;
    kernels::TokenRows io{r.x, n_embd, r.x_rows, r.gate, n_ff, r.h_rows, r.num_rows};
    kernels::matmul(l.gate_exps.expert(e), io, pool);
    io.y = r.up;
    kernels::matmul(l.up_exps.expert(e), io, pool);
    const float* gate_b = l.gate_exps_b ? l.gate_exps_b + e * n_ff : nullptr;
    const float* up_b = l.up_exps_b ? l.up_exps_b + e * n_ff : nullptr;
    for (int64_t j = 0; j < r.num_rows; ++j) {
        const int64_t h = r.h_rows ? r.h_rows[j] : j;
        float* g = r.gate + h * n_ff;
        float* u = r.up + h * n_ff;
        if (gate_b) kernels::add(g, gate_b, g, n_ff);
        if (up_b) kernels::add(u, up_b, u, n_ff);
        if (l.swiglu_oai) {
            kernels::swiglu_oai(g, u, g, n_ff, kernels::kSwigluOaiAlpha, kernels::kSwigluOaiLimit);
        } else {
            kernels::swiglu(g, u, g, n_ff);
        }
    }
    kernels::TokenRows io_down{r.gate, n_ff, r.h_rows, r.y, n_embd, r.y_rows, r.num_rows};
    kernels::matmul(l.down_exps.expert(e), io_down, pool);
    if (l.down_exps_b) {
        const float* down_b = l.down_exps_b + e * n_embd;
        for (int64_t j = 0; j < r.num_rows; ++j) {
            float* d = r.y + (r.y_rows ? r.y_rows[j] : j) * n_embd;
            kernels::add(d, down_b, d, n_embd);
        }
    }
}

void run_experts_local(const LayerWeights& l, int64_t n_embd, const float* x, const RouterOutput& route, float* y,
                       kernels::ThreadPool& pool) {
    const int64_t num_tokens = route.num_tokens, k = route.k, num_assign = num_tokens * k;
    const int64_t n_ff = l.gate_exps.rows, num_experts = l.gate_exps.num_experts;
    MOERIG_ASSERT(l.gate_exps.present() && l.up_exps.present() && l.down_exps.present());

    // Bucket assignments (a = t*k + i) by expert, keeping token order inside a bucket.
    std::vector<int64_t> offsets(static_cast<size_t>(num_experts + 1), 0);
    for (int64_t a = 0; a < num_assign; ++a) {
        const int32_t e = route.expert_ids[static_cast<size_t>(a)];
        MOERIG_ASSERT(e >= 0 && e < num_experts);
        ++offsets[static_cast<size_t>(e) + 1];
    }
    for (int64_t e = 0; e < num_experts; ++e) offsets[static_cast<size_t>(e + 1)] += offsets[static_cast<size_t>(e)];
    std::vector<int32_t> slots(static_cast<size_t>(num_assign)), tokens(static_cast<size_t>(num_assign));
    {
        std::vector<int64_t> fill(offsets.begin(), offsets.end() - 1);
        for (int64_t a = 0; a < num_assign; ++a) {
            const auto e = static_cast<size_t>(route.expert_ids[static_cast<size_t>(a)]);
            const auto pos = static_cast<size_t>(fill[e]++);
            slots[pos] = static_cast<int32_t>(a);
            tokens[pos] = static_cast<int32_t>(a / k);
        }
    }

    std::vector<float> gate(static_cast<size_t>(num_assign * n_ff)), up(gate.size());
    std::vector<float> down(static_cast<size_t>(num_assign * n_embd));
    for (int64_t e = 0; e < num_experts; ++e) {
        const int64_t begin = offsets[static_cast<size_t>(e)], count = offsets[static_cast<size_t>(e + 1)] - begin;
        if (count == 0) continue;
        const int32_t* slot = slots.data() + begin;
        run_expert_rows(l, e, n_embd,
                        ExpertRows{.x = x,
                                   .x_rows = tokens.data() + begin,
                                   .gate = gate.data(),
                                   .up = up.data(),
                                   .h_rows = slot,
                                   .y = down.data(),
                                   .y_rows = slot,
                                   .num_rows = count},
                        pool);
    }

    for (int64_t t = 0; t < num_tokens; ++t) {
        float* yt = y + t * n_embd;
        for (int64_t i = 0; i < k; ++i) {
            const float w = route.weights[static_cast<size_t>(t * k + i)];
            const float* d = down.data() + (t * k + i) * n_embd;
            if (i == 0) {
                kernels::scale(d, w, yt, n_embd);
            } else {
                kernels::axpy(w, d, yt, n_embd);
            }
        }
    }
}

void LocalExpertRunner::run(int64_t layer_idx, const float* x, const RouterOutput& route, float* y) {
    run_experts_local(weights_.layers.at(static_cast<size_t>(layer_idx)), n_embd_, x, route, y, pool_);
}

}  // namespace moerig::runtime
