// Weight x activation products. The reference dequantises each weight row and accumulates in double; the fast
// path converts the (gathered) activations once to the dot product's type (as llama.cpp: Q8_0/Q8_K, or F16/BF16
// for half weights), then walks tiles of weight rows, running every token over a
// tile while it is in cache, with rows (or, for small matrices, tokens) split over the thread pool. Q8_0, Q4_K and
// Q6_K weights with several tokens (prefill, expert groups) instead go through register-blocked integer GEMMs
// (gemm_q8_0.cpp, gemm_q4_k.cpp, gemm_q6_k.cpp) on the same quantised activations.
#include "kernels/matmul.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/error.h"
#include "kernels/gemm_q4_k.h"
#include "kernels/gemm_q6_k.h"
#include "kernels/gemm_q8_0.h"
#include "kernels/quant.h"
#include "kernels/quant_blocks.h"
#include "kernels/vec_dot.h"

#if defined(__SSE__)
#include <immintrin.h>
#endif

namespace moerig::kernels {
namespace {

// Rows per tile: 16 rows of a 4096-wide Q4_K matrix are 36 KiB, so a tile stays in L2 across tokens.
constexpr int64_t kRowTile = 16;
// Tokens per pass over a tile: 32 quantised 4096-wide activation rows (~150 KiB) stay in L2 with the tile.
constexpr int64_t kTokenTile = 32;
// From this many tokens on, Q8_0 (Q4_K, Q6_K) weights go through the register-blocked integer GEMMs; a single token
// (decode) keeps the streaming per-row dot product. Building a panel of Q4_K or Q6_K rows costs about as much as
// the micro-kernel saves at 2 tokens (bench_kernels' GEMM/dot table), so both start at 3.
constexpr int64_t kGemmMinTokensQ8_0 = 2;
constexpr int64_t kGemmMinTokensQ4_K = 3;
constexpr int64_t kGemmMinTokensQ6_K = 3;
// Decode streams each weight row once: asking for the row this far ahead keeps more misses in flight per core
// than the hardware prefetcher does on its own across block-structured rows.
constexpr int64_t kPrefetchRows = 2;

inline void prefetch_row(const void* row, size_t bytes) {
#if defined(__SSE__) && !defined(MOERIG_NO_PREFETCH)
    const char* p = static_cast<const char*>(row);
    for (size_t off = 0; off < bytes; off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
#else
    (void)row;
    (void)bytes;
#endif
}

void check_view(const WeightView& w, const char* what) {
    MOERIG_CHECK(w.rows >= 0 && w.cols >= 0, ConfigError, "{}: negative weight shape {}x{}", what, w.rows, w.cols);
    const auto& t = dtype_traits(w.type);
    MOERIG_CHECK(w.cols % t.block_elems == 0, ConfigError,
                 "{}: {} weight has {} columns, expected a multiple of its block size {}", what, t.name, w.cols,
                 t.block_elems);
    MOERIG_CHECK(w.rows <= 1 || w.row_stride_bytes >= row_bytes(w.type, w.cols), ConfigError,
                 "{}: row stride {} bytes is below the {} bytes of one {}-column {} row", what, w.row_stride_bytes,
                 row_bytes(w.type, w.cols), w.cols, t.name);
    MOERIG_CHECK(can_matmul(w.type), UnsupportedError, "{}: weight type {} is not supported", what, t.name);
}

void check_io(const WeightView& w, const TokenRows& io, const char* what) {
    MOERIG_CHECK(io.num_tokens >= 0, ConfigError, "{}: negative token count {}", what, io.num_tokens);
    MOERIG_CHECK(io.x_stride >= w.cols || io.num_tokens <= 1, ConfigError,
                 "{}: x row stride {} is below the {} weight columns", what, io.x_stride, w.cols);
    MOERIG_CHECK(io.y_stride >= w.rows || io.num_tokens <= 1, ConfigError,
                 "{}: y row stride {} is below the {} weight rows", what, io.y_stride, w.rows);
}

inline const float* x_row(const TokenRows& io, int64_t t) {
    return io.x + (io.x_rows ? io.x_rows[t] : t) * io.x_stride;
}
inline float* y_row(const TokenRows& io, int64_t t) {
    return io.y + (io.y_rows ? io.y_rows[t] : t) * io.y_stride;
}

// Activation rows in the dot product's type, as ggml-cpu's from_float of the vec_dot_type does on x86. Q8_0 is
// ggml-cpu's AVX quantize_row_q8_0, not the reference quantizer: scale 127 / max|x| (not 1 / d) and rounding
// ties to even (not away from zero). Q8_K (quantize_row_q8_K_ref), F16 and BF16 (round to nearest even) are
// quantize_row's own conversions.
void quantize_activations(DType act_type, const float* x, void* dst, int64_t n) {
    if (act_type != DType::Q8_0) {
        quantize_row(act_type, x, dst, n);
        return;
    }
    auto* b = static_cast<BlockQ8_0*>(dst);
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        float amax = 0.0f;
        for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
        b[i].d = fp32_to_fp16(amax / 127.f);
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        for (int j = 0; j < kQK; ++j) b[i].qs[j] = static_cast<int8_t>(std::nearbyint(x[j] * id));
    }
}

TokenRows dense_io(const WeightView& w, const float* x, int64_t num_tokens, float* y) {
    TokenRows io;
    io.x = x;
    io.x_stride = w.cols;
    io.y = y;
    io.y_stride = w.rows;
    io.num_tokens = num_tokens;
    return io;
}

}  // namespace

WeightView WeightView::dense(DType type, int64_t rows, int64_t cols, const void* data) {
    return WeightView{type, rows, cols, data, row_bytes(type, cols)};
}

WeightView WeightView::expert(DType type, int64_t rows, int64_t cols, const void* data, int64_t expert_idx) {
    const size_t stride = row_bytes(type, cols);
    return WeightView{type, rows, cols, static_cast<const char*>(data) + stride * rows * expert_idx, stride};
}

WeightView WeightView::slice_rows(int64_t row_begin, int64_t row_end) const {
    MOERIG_CHECK(0 <= row_begin && row_begin <= row_end && row_end <= rows, ConfigError,
                 "slice_rows: [{}, {}) is outside the {} rows of the weight", row_begin, row_end, rows);
    return WeightView{type, row_end - row_begin, cols, row(row_begin), row_stride_bytes};
}

bool can_matmul(DType type) {
    return vec_dot_fn(type, true) != nullptr && type != DType::Q8_K;
}

float vec_dot(DType type, const void* w_row, const void* x_quant, int64_t n) {
    VecDotFn fn = vec_dot_fn(type);
    MOERIG_CHECK(fn != nullptr, UnsupportedError, "vec_dot: weight type {} is not supported", dtype_name(type));
    return fn(w_row, x_quant, n);
}

float vec_dot_scalar(DType type, const void* w_row, const void* x_quant, int64_t n) {
    VecDotFn fn = vec_dot_fn(type, true);
    MOERIG_CHECK(fn != nullptr, UnsupportedError, "vec_dot: weight type {} is not supported", dtype_name(type));
    return fn(w_row, x_quant, n);
}

void matmul_ref(const WeightView& w, const TokenRows& io) {
    check_view(w, "matmul_ref");
    check_io(w, io, "matmul_ref");
    std::vector<float> wrow(w.cols);
    for (int64_t r = 0; r < w.rows; ++r) {
        dequantize_row(w.type, w.row(r), wrow.data(), w.cols);
        for (int64_t t = 0; t < io.num_tokens; ++t) {
            const float* x = x_row(io, t);
            double sum = 0;
            for (int64_t c = 0; c < w.cols; ++c) sum += static_cast<double>(wrow[c]) * x[c];
            y_row(io, t)[r] = static_cast<float>(sum);
        }
    }
}

void matmul_ref(const WeightView& w, const float* x, int64_t num_tokens, float* y) {
    matmul_ref(w, dense_io(w, x, num_tokens, y));
}

void matmul_ref_act(const WeightView& w, const TokenRows& io) {
    check_view(w, "matmul_ref_act");
    check_io(w, io, "matmul_ref_act");
    const DType act_type = activation_type(w.type);
    if (act_type == DType::F32) {
        matmul_ref(w, io);
        return;
    }
    // Round-trip every activation row through the activation type, then run the exact reference on the result.
    std::vector<uint8_t> packed(row_bytes(act_type, w.cols));
    std::vector<float> xr(static_cast<size_t>(w.cols * io.num_tokens));
    for (int64_t t = 0; t < io.num_tokens; ++t) {
        quantize_activations(act_type, x_row(io, t), packed.data(), w.cols);
        dequantize_row(act_type, packed.data(), xr.data() + t * w.cols, w.cols);
    }
    TokenRows rounded = io;
    rounded.x = xr.data();
    rounded.x_stride = w.cols;
    rounded.x_rows = nullptr;
    matmul_ref(w, rounded);
}

void matmul_ref_act(const WeightView& w, const float* x, int64_t num_tokens, float* y) {
    matmul_ref_act(w, dense_io(w, x, num_tokens, y));
}

namespace {

// Weights with a register-blocked integer GEMM (gemm_q8_0.h, gemm_q4_k.h, gemm_q6_k.h) and several tokens: quantise
// each activation row as quantize_activations does (Q8_0 rows are then repacked for the micro-kernel), and split rows
// (or tokens, for small matrices) over the pool as the per-row path does.
bool use_gemm(DType type, int64_t num_tokens) {
    if (type == DType::Q8_0) return num_tokens >= kGemmMinTokensQ8_0 && gemm_q8_0_supported();
    if (type == DType::Q4_K) return num_tokens >= kGemmMinTokensQ4_K && gemm_q4_k_supported();
    if (type == DType::Q6_K) return num_tokens >= kGemmMinTokensQ6_K && gemm_q6_k_supported();
    return false;
}

void matmul_gemm(const WeightView& w, const TokenRows& io, ThreadPool& pool) {
    const int64_t num_tokens = io.num_tokens;
    const bool q8_0 = w.type == DType::Q8_0;
    const DType act_type = activation_type(w.type);
    const size_t q_bytes = row_bytes(act_type, w.cols);
    const size_t act_bytes = q8_0 ? gemm_q8_0_packed_bytes(w.cols) : (q_bytes + 63) / 64 * 64;
    thread_local std::vector<uint8_t> act_buf;
    thread_local std::vector<const void*> acts;
    thread_local std::vector<float*> ys;
    act_buf.resize(act_bytes * num_tokens + 64);
    uint8_t* base = act_buf.data() + (64 - reinterpret_cast<uintptr_t>(act_buf.data()) % 64) % 64;
    acts.resize(num_tokens);
    ys.resize(num_tokens);
    for (int64_t t = 0; t < num_tokens; ++t) {
        acts[t] = base + act_bytes * t;
        ys[t] = y_row(io, t);
    }
    auto quantize = [&](int64_t t0, int64_t t1, int) {
        thread_local std::vector<uint8_t> q;
        q.resize(q_bytes);
        for (int64_t t = t0; t < t1; ++t) {
            if (q8_0) {
                quantize_activations(act_type, x_row(io, t), q.data(), w.cols);
                gemm_q8_0_pack(q.data(), w.cols, base + act_bytes * t);
            } else {
                quantize_activations(act_type, x_row(io, t), base + act_bytes * t, w.cols);
            }
        }
    };
    if (num_tokens >= 4) {
        pool.parallel_for(num_tokens, quantize);
    } else {
        quantize(0, num_tokens, 0);
    }
    const void* const* act_ptrs = acts.data();
    float* const* y_ptrs = ys.data();
    auto gemm = [&](int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
        if (q8_0) {
            gemm_q8_0(w, r0, r1, act_ptrs + t0, y_ptrs + t0, t1 - t0);
        } else if (w.type == DType::Q4_K) {
            gemm_q4_k(w, r0, r1, act_ptrs + t0, y_ptrs + t0, t1 - t0);
        } else {
            gemm_q6_k(w, r0, r1, act_ptrs + t0, y_ptrs + t0, t1 - t0);
        }
    };
    const int64_t num_threads = pool.num_threads();
    if (w.rows >= kRowTile * num_threads || num_tokens < num_threads) {
        const int64_t grain = w.rows >= kRowTile * num_threads ? kRowTile : 1;
        pool.parallel_for(
            w.rows, [&](int64_t r0, int64_t r1, int) { gemm(r0, r1, 0, num_tokens); }, grain);
    } else {
        pool.parallel_for(num_tokens, [&](int64_t t0, int64_t t1, int) { gemm(0, w.rows, t0, t1); });
    }
}

}  // namespace

void matmul(const WeightView& w, const TokenRows& io, ThreadPool& pool) {
    check_view(w, "matmul");
    check_io(w, io, "matmul");
    if (io.num_tokens == 0 || w.rows == 0) return;
    if (use_gemm(w.type, io.num_tokens)) {
        matmul_gemm(w, io, pool);
        return;
    }
    const DType act_type = activation_type(w.type);
    const VecDotFn dot = vec_dot_fn(w.type);
    const int64_t num_tokens = io.num_tokens;

    // Activations in the dot product's type, one packed row per token (float weights read x in place).
    const size_t act_bytes = row_bytes(act_type, w.cols);
    thread_local std::vector<uint8_t> act_buf;
    thread_local std::vector<const void*> act_rows;
    act_rows.resize(num_tokens);
    if (act_type == DType::F32) {
        for (int64_t t = 0; t < num_tokens; ++t) act_rows[t] = x_row(io, t);
    } else {
        if (act_buf.size() < act_bytes * num_tokens) act_buf.resize(act_bytes * num_tokens);
        uint8_t* base = act_buf.data();
        auto quantize = [&](int64_t t0, int64_t t1, int) {
            for (int64_t t = t0; t < t1; ++t) {
                quantize_activations(act_type, x_row(io, t), base + act_bytes * t, w.cols);
            }
        };
        if (num_tokens >= 4) {
            pool.parallel_for(num_tokens, quantize);
        } else {
            quantize(0, num_tokens, 0);
        }
        for (int64_t t = 0; t < num_tokens; ++t) act_rows[t] = base + act_bytes * t;
    }

    const int64_t cols = w.cols;
    const void* const* acts = act_rows.data();
    const size_t w_bytes = row_bytes(w.type, cols);
    auto run_block = [&, acts](int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
        for (int64_t tt = t0; tt < t1; tt += kTokenTile) {
            const int64_t tt_end = std::min(t1, tt + kTokenTile);
            for (int64_t rt = r0; rt < r1; rt += kRowTile) {
                const int64_t rt_end = std::min(r1, rt + kRowTile);
                for (int64_t t = tt; t < tt_end; ++t) {
                    float* y = y_row(io, t);
                    const void* xq = acts[t];
                    for (int64_t r = rt; r < rt_end; ++r) {
                        if (t == tt && r + kPrefetchRows < r1) prefetch_row(w.row(r + kPrefetchRows), w_bytes);
                        y[r] = dot(w.row(r), xq, cols);
                    }
                }
            }
        }
    };
    const int64_t num_threads = pool.num_threads();
    if (w.rows >= kRowTile * num_threads || num_tokens < num_threads) {
        // Rows split on tile boundaries when there are enough tiles for every thread.
        const int64_t grain = w.rows >= kRowTile * num_threads ? kRowTile : 1;
        pool.parallel_for(
            w.rows, [&](int64_t r0, int64_t r1, int) { run_block(r0, r1, 0, num_tokens); }, grain);
    } else {
        pool.parallel_for(num_tokens, [&](int64_t t0, int64_t t1, int) { run_block(0, w.rows, t0, t1); });
    }
}

void matmul(const WeightView& w, const float* x, int64_t num_tokens, float* y, ThreadPool& pool) {
    matmul(w, dense_io(w, x, num_tokens, y), pool);
}

}  // namespace moerig::kernels
