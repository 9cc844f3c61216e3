// Decode-step benchmark of the CUDA backend on a Mixtral-8x7B-shaped model (hidden 4096, 32 layers, GQA 32/8,
// 8 experts of ffn 14336, top-2) with random Q4_K weights generated on the GPU. One step runs, per layer,
// the norms, q/k/v/o GEMVs, RoPE, attention over a filled KV cache, the router and the two active experts.
// The step uses the engine's decode path: activations quantised to int8 once per product and the K-quant DP4A
// GEMVs (dense and expert-indexed, kernels/cuda/gemv_dp4a.h); the float-dequant GEMV step is timed beside it.
// Reports weight bytes read per step / step time against device-to-device cudaMemcpy bandwidth (target >= 0.6).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#ifdef MOERIG_HAVE_CUDA
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <cmath>
#include <functional>
#include <memory>

#include "bench/bench_util.h"
#include "kernels/cuda/argmax.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/experts.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/gemv_dp4a.h"
#include "kernels/cuda/permute.h"
#include "kernels/cuda/random_weights.h"
#include "kernels/cuda/rms_norm.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/router.h"
#include "kernels/dtype.h"
#include "kernels/error.h"
#include "kernels/kquant_dp4a.h"
#include "kernels/matmul.h"
#include "runtime/cuda/cuda_graph.h"

namespace {

using moerig::DType;
using moerig::bench::nmse;
namespace kc = moerig::kernels::cuda;

constexpr int64_t kHidden = 4096, kFfn = 14336, kExperts = 8, kUsed = 2, kHeads = 32, kKvHeads = 8, kHeadDim = 128;
constexpr DType kType = DType::Q4_K;

/// Device allocation freed on scope exit.
class DeviceMem {
  public:
    explicit DeviceMem(size_t bytes) : bytes_(bytes) { MOERIG_CUDA_CHECK(cudaMalloc(&p_, bytes)); }
    ~DeviceMem() { cudaFree(p_); }
    DeviceMem(const DeviceMem&) = delete;
    DeviceMem& operator=(const DeviceMem&) = delete;
    template <typename T = void>
    T* get() const {
        return static_cast<T*>(p_);
    }
    size_t bytes() const { return bytes_; }

  private:
    void* p_ = nullptr;
    size_t bytes_;
};

size_t matrix_bytes(int64_t rows, int64_t cols, DType t = kType) {
    return moerig::dtype_bytes(t, static_cast<uint64_t>(rows * cols));
}

struct Layer {
    std::unique_ptr<DeviceMem> wq, wk, wv, wo, gate, up, down, router, attn_norm, ffn_norm, k_cache, v_cache;
};

float* random_floats(DeviceMem& m, int64_t n, uint64_t seed, cudaStream_t s) {
    kc::fill_random_weights(DType::F32, m.get(), n, seed, s);
    return m.get<float>();
}

struct Model {
    int num_layers;
    int ctx;
    std::vector<Layer> layers;
    size_t bytes_per_step = 0;  // weights read by one decode step

    Model(int num_layers_, int ctx_, cudaStream_t s) : num_layers(num_layers_), ctx(ctx_), layers(num_layers_) {
        uint64_t seed = 1;
        auto quant = [&](int64_t rows, int64_t cols) {
            auto m = std::make_unique<DeviceMem>(matrix_bytes(rows, cols));
            kc::fill_random_weights(kType, m->get(), rows * cols, seed++, s);
            return m;
        };
        auto floats = [&](int64_t n) {
            auto m = std::make_unique<DeviceMem>(static_cast<size_t>(n) * 4);
            random_floats(*m, n, seed++, s);
            return m;
        };
        for (auto& l : layers) {
            l.wq = quant(kHeads * kHeadDim, kHidden);
            l.wk = quant(kKvHeads * kHeadDim, kHidden);
            l.wv = quant(kKvHeads * kHeadDim, kHidden);
            l.wo = quant(kHidden, kHeads * kHeadDim);
            l.gate = quant(kExperts * kFfn, kHidden);
            l.up = quant(kExperts * kFfn, kHidden);
            l.down = quant(kExperts * kHidden, kFfn);
            l.router = floats(kExperts * kHidden);
            l.attn_norm = floats(kHidden);
            l.ffn_norm = floats(kHidden);
            l.k_cache = floats(static_cast<int64_t>(ctx) * kKvHeads * kHeadDim);
            l.v_cache = floats(static_cast<int64_t>(ctx) * kKvHeads * kHeadDim);
        }
        const size_t per_layer = 2 * matrix_bytes(kHeads * kHeadDim, kHidden) +
                                 2 * matrix_bytes(kKvHeads * kHeadDim, kHidden) +
                                 kUsed * 3 * matrix_bytes(kFfn, kHidden) + kExperts * kHidden * 4;
        bytes_per_step = per_layer * static_cast<size_t>(num_layers);
        MOERIG_CUDA_CHECK(cudaStreamSynchronize(s));
    }

    static size_t bytes_per_layer_allocated(int ctx) {
        return 2 * matrix_bytes(kHeads * kHeadDim, kHidden) + 2 * matrix_bytes(kKvHeads * kHeadDim, kHidden) +
               3 * kExperts * matrix_bytes(kFfn, kHidden) + (kExperts + 2) * kHidden * 4 +
               2 * static_cast<size_t>(ctx) * kKvHeads * kHeadDim * 4;
    }
};

/// Activations of one decode step; xq holds the int8 activations of the current DP4A product.
struct Step {
    DeviceMem h{kHidden * 4}, xn{kHidden * 4}, q{kHeads * kHeadDim * 4}, attn{kHeads * kHeadDim * 4}, tmp{kHidden * 4},
        logits{kExperts * 4}, pos{4}, scratch{0}, ids, weights, xq;
    explicit Step(int num_layers)
        : scratch(static_cast<size_t>(kc::moe_ffn_scratch_elems(kUsed, kFfn)) * 4),
          ids(static_cast<size_t>(num_layers) * kUsed * 4),
          weights(static_cast<size_t>(num_layers) * kUsed * 4),
          xq(static_cast<size_t>(std::max(kc::q8_activation_bytes(1, kHidden), kc::q8_activation_bytes(kUsed, kFfn)))) {
    }
};

/// moe_ffn's experts for one token on the DP4A path (as CudaSession::ffn): int8 activations, expert-indexed
/// K-quant GEMVs for gate and up (the token's two slots share its input) and down, SwiGLU, ordered combine.
void moe_ffn_dp4a(const Layer& l, Step& st, const int32_t* ids, const float* w, cudaStream_t s) {
    float* g = st.scratch.get<float>();
    float* u = g + kUsed * kFfn;
    float* y = u + kUsed * kFfn;
    const int64_t gate_bytes = static_cast<int64_t>(matrix_bytes(kFfn, kHidden));
    const int64_t down_bytes = static_cast<int64_t>(matrix_bytes(kHidden, kFfn));
    kc::quantize_q8_activations(st.xn.get<float>(), 1, kHidden, st.xq.get(), s);
    kc::gemv_dp4a_indexed(kType, l.gate->get(), gate_bytes, kFfn, kHidden, ids, kUsed, st.xq.get(), 1, kUsed, g, kFfn,
                          s);
    kc::gemv_dp4a_indexed(kType, l.up->get(), gate_bytes, kFfn, kHidden, ids, kUsed, st.xq.get(), 1, kUsed, u, kFfn, s);
    kc::swiglu(g, u, g, kUsed * kFfn, s);
    kc::quantize_q8_activations(g, kUsed, kFfn, st.xq.get(), s);
    kc::gemv_dp4a_indexed(kType, l.down->get(), down_bytes, kHidden, kFfn, ids, kUsed, st.xq.get(), kUsed, 1, y,
                          kHidden, s);
    kc::combine_rows(y, kHidden, nullptr, w, 1, kUsed, kHidden, st.h.get<float>(), kHidden, true, s);
}

/// One decode step; dp4a: the engine's int8 path for every quantised product, else the float-dequant GEMVs.
void decode_step(const Model& m, Step& st, cudaStream_t s, bool dp4a) {
    moerig::kernels::RopeParams rope;
    rope.n_dims = kHeadDim;
    rope.freq_base = 1e6f;
    moerig::kernels::AttentionParams ap;
    ap.num_heads = kHeads;
    ap.num_kv_heads = kKvHeads;
    ap.head_dim = kHeadDim;
    ap.scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
    moerig::kernels::RouterParams rp;
    rp.num_experts = kExperts;
    rp.num_experts_used = kUsed;
    rp.normalize = true;
    const int64_t kv_row = kKvHeads * kHeadDim;
    for (int li = 0; li < m.num_layers; ++li) {
        const Layer& l = m.layers[li];
        float* k_new = l.k_cache->get<float>() + static_cast<int64_t>(m.ctx - 1) * kv_row;
        float* v_new = l.v_cache->get<float>() + static_cast<int64_t>(m.ctx - 1) * kv_row;
        kc::rms_norm_rows(st.h.get<float>(), l.attn_norm->get<float>(), st.xn.get<float>(), 1, kHidden, 1e-5f, s);
        if (dp4a) {
            kc::quantize_q8_activations(st.xn.get<float>(), 1, kHidden, st.xq.get(), s);
            kc::gemv_dp4a(kType, l.wq->get(), kHeads * kHeadDim, kHidden, st.xq.get(), 1, st.q.get<float>(), s);
            kc::gemv_dp4a(kType, l.wk->get(), kv_row, kHidden, st.xq.get(), 1, k_new, s);
            kc::gemv_dp4a(kType, l.wv->get(), kv_row, kHidden, st.xq.get(), 1, v_new, s);
        } else {
            kc::gemv(kType, l.wq->get(), kHeads * kHeadDim, kHidden, st.xn.get<float>(), 1, st.q.get<float>(), s);
            kc::gemv(kType, l.wk->get(), kv_row, kHidden, st.xn.get<float>(), 1, k_new, s);
            kc::gemv(kType, l.wv->get(), kv_row, kHidden, st.xn.get<float>(), 1, v_new, s);
        }
        kc::rope(rope, st.q.get<float>(), 1, kHeads, kHeads * kHeadDim, kHeadDim, st.pos.get<int32_t>(), s);
        kc::rope(rope, k_new, 1, kKvHeads, kv_row, kHeadDim, st.pos.get<int32_t>(), s);
        moerig::kernels::AttentionIo io;
        io.q = st.q.get<float>();
        io.q_token_stride = kHeads * kHeadDim;
        io.q_head_stride = kHeadDim;
        io.k = l.k_cache->get<float>();
        io.v = l.v_cache->get<float>();
        io.k_token_stride = io.v_token_stride = kv_row;
        io.k_head_stride = io.v_head_stride = kHeadDim;
        io.out = st.attn.get<float>();
        io.out_token_stride = kHeads * kHeadDim;
        io.out_head_stride = kHeadDim;
        io.num_tokens = 1;
        io.kv_len = m.ctx;
        kc::attention(ap, io, s);
        if (dp4a) {
            kc::quantize_q8_activations(st.attn.get<float>(), 1, kHeads * kHeadDim, st.xq.get(), s);
            kc::gemv_dp4a(kType, l.wo->get(), kHidden, kHeads * kHeadDim, st.xq.get(), 1, st.tmp.get<float>(), s);
        } else {
            kc::gemv(kType, l.wo->get(), kHidden, kHeads * kHeadDim, st.attn.get<float>(), 1, st.tmp.get<float>(), s);
        }
        kc::add(st.h.get<float>(), st.tmp.get<float>(), st.h.get<float>(), kHidden, s);
        kc::rms_norm_rows(st.h.get<float>(), l.ffn_norm->get<float>(), st.xn.get<float>(), 1, kHidden, 1e-5f, s);
        kc::gemv(DType::F32, l.router->get(), kExperts, kHidden, st.xn.get<float>(), 1, st.logits.get<float>(), s);
        int32_t* ids = st.ids.get<int32_t>() + li * kUsed;
        float* w = st.weights.get<float>() + li * kUsed;
        kc::route(rp, st.logits.get<float>(), 1, ids, w, s);
        if (dp4a) {
            moe_ffn_dp4a(l, st, ids, w, s);
            continue;
        }
        const kc::ExpertTensor gate{kType, l.gate->get(), kFfn, kHidden};
        const kc::ExpertTensor up{kType, l.up->get(), kFfn, kHidden};
        const kc::ExpertTensor down{kType, l.down->get(), kHidden, kFfn};
        kc::moe_ffn(gate, up, down, kc::ExpertActivation::kSwiglu, st.xn.get<float>(), 1, ids, w, kUsed,
                    st.h.get<float>(), true, st.scratch.get<float>(), s);
    }
}

double time_ms(cudaStream_t s, int iters, const std::function<void()>& fn) {
    cudaEvent_t a, b;
    MOERIG_CUDA_CHECK(cudaEventCreate(&a));
    MOERIG_CUDA_CHECK(cudaEventCreate(&b));
    MOERIG_CUDA_CHECK(cudaEventRecord(a, s));
    for (int i = 0; i < iters; ++i) fn();
    MOERIG_CUDA_CHECK(cudaEventRecord(b, s));
    MOERIG_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    MOERIG_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return static_cast<double>(ms) / iters;
}

/// Device-to-device cudaMemcpy bandwidth, counting bytes read plus written (as bandwidthTest does).
double memcpy_gbs(cudaStream_t s, size_t bytes) {
    DeviceMem src(bytes), dst(bytes);
    MOERIG_CUDA_CHECK(cudaMemsetAsync(src.get(), 1, bytes, s));
    MOERIG_CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, s));
    const double ms = time_ms(
        s, 10, [&] { MOERIG_CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, s)); });
    return 2.0 * static_cast<double>(bytes) / (ms * 1e-3) / 1e9;
}

/// Host copy of the int8 activations quantize_q8_activations wrote for num_vecs vectors of num_cols values.
struct HostActivations {
    std::vector<int32_t> q;  // int8 values, 4-byte aligned
    std::vector<float> d;
    std::vector<int> sums;
    HostActivations(const void* xq, int64_t num_vecs, int64_t num_cols)
        : q(static_cast<size_t>(num_vecs * num_cols / 4)),
          d(static_cast<size_t>(num_vecs * num_cols / 32)),
          sums(d.size()) {
        std::vector<uint8_t> raw(static_cast<size_t>(kc::q8_activation_bytes(num_vecs, num_cols)));
        MOERIG_CUDA_CHECK(cudaMemcpy(raw.data(), xq, raw.size(), cudaMemcpyDeviceToHost));
        const size_t scales = static_cast<size_t>((num_vecs * num_cols + 15) / 16 * 16);
        std::memcpy(q.data(), raw.data(), static_cast<size_t>(num_vecs * num_cols));
        std::memcpy(d.data(), raw.data() + scales, d.size() * 4);
        std::memcpy(sums.data(), raw.data() + scales + d.size() * 4, sums.size() * 4);
    }
    /// Row times vector v with the host run of the DP4A block dot products.
    float row_dot(const uint8_t* row, int64_t cols, int64_t v) const {
        const auto* xq = reinterpret_cast<const int8_t*>(q.data());
        const size_t block_bytes = matrix_bytes(1, 256);
        float sum = 0;
        for (int64_t b = 0; b < cols / 256; ++b) {
            const int64_t x0 = v * cols + b * 256;
            sum += moerig::kernels::kq::block_dot<kType>(row + b * block_bytes, xq + x0, d.data() + x0 / 32,
                                                         sums.data() + x0 / 32);
        }
        return sum;
    }
};

/// Checks the GPU Q4_K GEMVs against the CPU on the first rows of layer 0's wq: the float GEMV against
/// matmul_ref, the DP4A GEMV against the host run of its block dot products (and matmul_ref within int8
/// rounding), and the expert-indexed DP4A GEMV on two experts' gate rows.
bool validate(const Model& m, Step& st, cudaStream_t s) {
    constexpr int64_t kRows = 64;
    DeviceMem x(kHidden * 4), y(kFfn * kUsed * 4), ids(kUsed * 4);
    kc::fill_random_weights(DType::F32, x.get(), kHidden, 99, s);
    kc::gemv(kType, m.layers[0].wq->get(), kRows, kHidden, x.get<float>(), 1, y.get<float>(), s);
    std::vector<uint8_t> w(matrix_bytes(kRows, kHidden));
    std::vector<float> xh(kHidden), yh(kRows), ref(kRows), ref_dp4a(kRows);
    MOERIG_CUDA_CHECK(cudaStreamSynchronize(s));
    MOERIG_CUDA_CHECK(cudaMemcpy(w.data(), m.layers[0].wq->get(), w.size(), cudaMemcpyDeviceToHost));
    MOERIG_CUDA_CHECK(cudaMemcpy(xh.data(), x.get(), kHidden * 4, cudaMemcpyDeviceToHost));
    MOERIG_CUDA_CHECK(cudaMemcpy(yh.data(), y.get(), kRows * 4, cudaMemcpyDeviceToHost));
    moerig::kernels::matmul_ref(moerig::kernels::WeightView::dense(kType, kRows, kHidden, w.data()), xh.data(), 1,
                                ref.data());
    const double float_nmse = nmse(yh, ref);
    fmt::print("validate: Q4_K GEMV vs CPU matmul_ref on {} rows: NMSE {:.3g}\n", kRows, float_nmse);

    kc::quantize_q8_activations(x.get<float>(), 1, kHidden, st.xq.get(), s);
    kc::gemv_dp4a(kType, m.layers[0].wq->get(), kRows, kHidden, st.xq.get(), 1, y.get<float>(), s);
    MOERIG_CUDA_CHECK(cudaStreamSynchronize(s));
    MOERIG_CUDA_CHECK(cudaMemcpy(yh.data(), y.get(), kRows * 4, cudaMemcpyDeviceToHost));
    const HostActivations act(st.xq.get(), 1, kHidden);
    const size_t row_b = matrix_bytes(1, kHidden);
    for (int64_t r = 0; r < kRows; ++r) ref_dp4a[r] = act.row_dot(w.data() + r * row_b, kHidden, 0);
    const double dp4a_nmse = nmse(yh, ref_dp4a), dp4a_float_nmse = nmse(yh, ref);
    fmt::print("validate: Q4_K DP4A GEMV vs host block dots: NMSE {:.3g}; vs matmul_ref (int8 activations) {:.3g}\n",
               dp4a_nmse, dp4a_float_nmse);

    const int32_t experts[kUsed] = {kExperts - 1, 1};
    MOERIG_CUDA_CHECK(cudaMemcpy(ids.get(), experts, sizeof experts, cudaMemcpyHostToDevice));
    const auto gate_bytes = static_cast<int64_t>(matrix_bytes(kFfn, kHidden));
    kc::gemv_dp4a_indexed(kType, m.layers[0].gate->get(), gate_bytes, kFfn, kHidden, ids.get<int32_t>(), kUsed,
                          st.xq.get(), 1, kUsed, y.get<float>(), kFfn, s);
    std::vector<float> got(kRows), want(kRows);
    double indexed_nmse = 0;
    for (int j = 0; j < kUsed; ++j) {
        MOERIG_CUDA_CHECK(cudaMemcpy(w.data(), m.layers[0].gate->get<uint8_t>() + experts[j] * gate_bytes, w.size(),
                                     cudaMemcpyDeviceToHost));
        MOERIG_CUDA_CHECK(cudaMemcpy(got.data(), y.get<float>() + j * kFfn, kRows * 4, cudaMemcpyDeviceToHost));
        for (int64_t r = 0; r < kRows; ++r) want[r] = act.row_dot(w.data() + r * row_b, kHidden, 0);
        indexed_nmse = std::max(indexed_nmse, nmse(got, want));
    }
    fmt::print("validate: Q4_K DP4A expert-indexed GEMV (experts {} and {}) vs host block dots: NMSE {:.3g}\n",
               experts[0], experts[1], indexed_nmse);
    return float_nmse < 1e-8 && dp4a_nmse < 1e-10 && dp4a_float_nmse < 1e-3 && indexed_nmse < 1e-10;
}

int run(int argc, char** argv) {
    int num_layers = 32, iters = 20, ctx = 512;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--layers") num_layers = std::atoi(argv[i + 1]);
        if (a == "--iters") iters = std::atoi(argv[i + 1]);
        if (a == "--ctx") ctx = std::atoi(argv[i + 1]);
    }
    if (moerig::cuda::device_count() == 0) {
        std::puts("bench_cuda_decode: no CUDA GPU on this machine; nothing to measure");
        return 0;
    }
    cudaDeviceProp prop{};
    MOERIG_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    size_t free_b = 0, total_b = 0;
    MOERIG_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    const size_t per_layer = Model::bytes_per_layer_allocated(ctx);
    const size_t reserve = size_t{3} << 30;  // memcpy test buffers and the context
    const int fit = free_b > reserve ? static_cast<int>((free_b - reserve) / per_layer) : 0;
    if (fit < num_layers) {
        fmt::print("note: {} layers do not fit in {:.1f} GiB free; using {}\n", num_layers, free_b / 1073741824.0, fit);
        num_layers = fit;
    }
    if (num_layers < 1) {
        std::puts("bench_cuda_decode: not enough GPU memory for one layer");
        return 1;
    }
    fmt::print("GPU: {} (sm_{}{}), {:.1f} GiB; model: Mixtral-8x7B shape, {} layers, Q4_K, ctx {}\n", prop.name,
               prop.major, prop.minor, total_b / 1073741824.0, num_layers, ctx);
    cudaStream_t s;
    MOERIG_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    Model model(num_layers, ctx, s);
    fmt::print("weights: {:.2f} GiB on the GPU, {:.3f} GB read per decode step\n",
               per_layer * static_cast<double>(num_layers) / 1073741824.0, model.bytes_per_step / 1e9);

    Step st(num_layers);
    if (!validate(model, st, s)) {
        std::puts("bench_cuda_decode: FAILED validation (GPU GEMV disagrees with the CPU reference)");
        return 1;
    }
    kc::fill_random_weights(DType::F32, st.h.get(), kHidden, 7, s);
    const int32_t pos = ctx - 1;
    MOERIG_CUDA_CHECK(cudaMemcpyAsync(st.pos.get(), &pos, 4, cudaMemcpyHostToDevice, s));
    decode_step(model, st, s, true);
    MOERIG_CUDA_CHECK(cudaStreamSynchronize(s));
    std::vector<int32_t> ids(static_cast<size_t>(num_layers) * kUsed);
    MOERIG_CUDA_CHECK(cudaMemcpy(ids.data(), st.ids.get(), ids.size() * 4, cudaMemcpyDeviceToHost));
    for (int li = 0; li < num_layers; ++li) {
        const int a = ids[li * kUsed], b = ids[li * kUsed + 1];
        if (a < 0 || a >= kExperts || b < 0 || b >= kExperts || a == b) {
            fmt::print("bench_cuda_decode: FAILED: layer {} routed to experts {} and {}\n", li, a, b);
            return 1;
        }
    }

    const double eager_ms = time_ms(s, iters, [&] { decode_step(model, st, s, true); });
    moerig::runtime::cuda::CudaGraphStep graph;
    graph.capture(s, [&] { decode_step(model, st, s, true); });
    graph.launch(s);
    const double graph_ms = time_ms(s, iters, [&] { graph.launch(s); });
    graph.reset();
    // The float-dequant path, for comparison.
    moerig::runtime::cuda::CudaGraphStep float_graph;
    float_graph.capture(s, [&] { decode_step(model, st, s, false); });
    float_graph.launch(s);
    const double float_graph_ms = time_ms(s, iters, [&] { float_graph.launch(s); });
    float_graph.reset();

    // One expert's gate GEMV alone (rotating over layers so the 50 MB L2 never holds the matrix), both paths.
    kc::quantize_q8_activations(st.xn.get<float>(), 1, kHidden, st.xq.get(), s);
    int gemv_layer = 0;
    const double gemv_ms = time_ms(s, iters * 4, [&] {
        gemv_layer = (gemv_layer + 1) % num_layers;
        kc::gemv_dp4a(kType, model.layers[gemv_layer].gate->get(), kFfn, kHidden, st.xq.get(), 1,
                      st.scratch.get<float>(), s);
    });
    const double float_gemv_ms = time_ms(s, iters * 4, [&] {
        gemv_layer = (gemv_layer + 1) % num_layers;
        kc::gemv(kType, model.layers[gemv_layer].gate->get(), kFfn, kHidden, st.xn.get<float>(), 1,
                 st.scratch.get<float>(), s);
    });
    const double d2d = memcpy_gbs(s, size_t{1} << 30);

    const double best_ms = std::min(eager_ms, graph_ms);
    const double step_gbs = model.bytes_per_step / (best_ms * 1e-3) / 1e9;
    const double float_step_gbs = model.bytes_per_step / (float_graph_ms * 1e-3) / 1e9;
    const double gemv_gbs = matrix_bytes(kFfn, kHidden) / (gemv_ms * 1e-3) / 1e9;
    const double float_gemv_gbs = matrix_bytes(kFfn, kHidden) / (float_gemv_ms * 1e-3) / 1e9;
    fmt::print("decode step (DP4A): {:.3f} ms eager, {:.3f} ms CUDA graph ({:.1f} tokens/s)\n", eager_ms, graph_ms,
               1e3 / best_ms);
    fmt::print("decode step (float GEMV): {:.3f} ms CUDA graph ({:.1f} tokens/s)\n", float_graph_ms,
               1e3 / float_graph_ms);
    fmt::print("single Q4_K GEMV {}x{}: DP4A {:.1f} us, {:.0f} GB/s; float {:.1f} us, {:.0f} GB/s\n", kFfn, kHidden,
               gemv_ms * 1e3, gemv_gbs, float_gemv_ms * 1e3, float_gemv_gbs);
    fmt::print("device-to-device cudaMemcpy: {:.0f} GB/s (read + write)\n", d2d);
    fmt::print(
        "RESULT decode_weight_gbs={:.0f} d2d_gbs={:.0f} ratio={:.3f} gemv_ratio={:.3f} float_ratio={:.3f} "
        "float_gemv_ratio={:.3f} step_ms={:.3f} graph_ms={:.3f} layers={} target=0.6 {}\n",
        step_gbs, d2d, step_gbs / d2d, gemv_gbs / d2d, float_step_gbs / d2d, float_gemv_gbs / d2d, eager_ms, graph_ms,
        num_layers, step_gbs / d2d >= 0.6 ? "MET" : "MISSED");
    cudaStreamDestroy(s);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_cuda_decode: error: %s\n", e.what());
        return 2;
    }
}

#else

int main() {
    std::puts("bench_cuda_decode: CUDA support was not built (configure with nvcc present or -DMOERIG_CUDA=ON)");
    return 0;
}

#endif
