// CPU kernel benchmark: decode GEMV bandwidth per weight type against this machine's measured memory read
// bandwidth, prefill GEMM GFLOP/s, the K-quant GEMMs against per-row dot products by token count, and (when
// MOERIG_GGML_CPU_LIB names llama.cpp's libggml-cpu.so) the speed of our per-row dot products against ggml's own on
// identical bytes. Every kernel is validated before it is timed.
//   bench_kernels [--threads N] [--mib M]
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/gemm_q4_k.h"
#include "kernels/gemm_q6_k.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "kernels/threadpool.h"
#include "kernels/vec_dot.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

using namespace moerig;
using namespace moerig::kernels;

namespace {

using Clock = std::chrono::steady_clock;

template <class Fn>
double best_seconds(int reps, Fn&& fn) {
    double best = 1e30;
    for (int i = 0; i < reps; ++i) {
        const auto t0 = Clock::now();
        fn();
        best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
    }
    return best;
}

std::vector<float> random_floats(int64_t n, uint32_t seed, float scale) {
    std::vector<float> v(n);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (auto& x : v) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        // Sum of 4 uniforms: roughly Gaussian, cheap.
        float u = 0;
        for (int k = 0; k < 4; ++k) u += static_cast<float>((s >> (16 * k)) & 0xFFFF) / 65535.0f;
        x = (u - 2.0f) * scale;
    }
    return v;
}

// Read bandwidth: every thread sums its share of the buffer (what a memory-bound GEMV does).
double read_bandwidth(const std::vector<uint8_t>& buf, ThreadPool& pool) {
    std::vector<double> sink(pool.num_threads());
    const double s = best_seconds(5, [&] {
        pool.parallel_for(
            static_cast<int64_t>(buf.size()),
            [&](int64_t b, int64_t e, int t) {
#if defined(__AVX2__)
                // Four independent accumulators, two cache lines per step: bound by memory, not by add latency.
                __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
                for (int64_t i = b; i + 128 <= e; i += 128) {
                    const auto* p = reinterpret_cast<const __m256i*>(&buf[i]);
                    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(p));
                    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(p + 1));
                    a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(p + 2));
                    a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(p + 3));
                }
                const __m256i acc = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
                sink[t] += _mm256_extract_epi64(acc, 0);
#else
                uint64_t acc = 0;
                for (int64_t i = b; i + 8 <= e; i += 8) {
                    uint64_t v;
                    std::memcpy(&v, &buf[i], 8);
                    acc += v;
                }
                sink[t] += static_cast<double>(acc);
#endif
            },
            4096);
    });
    return buf.size() / s / 1e9;
}

double memcpy_bandwidth(std::vector<uint8_t>& src, ThreadPool& pool) {
    std::vector<uint8_t> dst(src.size());
    const double s = best_seconds(3, [&] {
        pool.parallel_for(
            static_cast<int64_t>(src.size()), [&](int64_t b, int64_t e, int) { std::memcpy(&dst[b], &src[b], e - b); },
            4096);
    });
    return 2.0 * src.size() / s / 1e9;  // bytes read + written
}

struct GgmlCpu {
    struct Traits {
        void (*from_float)(const float*, void*, int64_t);
        void (*vec_dot)(int, float*, size_t, const void*, size_t, const void*, size_t, int);
        int vec_dot_type;
        int64_t nrows;
    };
    void* handle = nullptr;
    const Traits* (*traits)(int) = nullptr;

    explicit GgmlCpu(const char* path) {
        if (!path) return;
        handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!handle) {
            std::printf("  (could not load %s: %s)\n", path, dlerror());
            return;
        }
        auto init = reinterpret_cast<void (*)()>(dlsym(handle, "ggml_cpu_init"));
        traits = reinterpret_cast<const Traits* (*)(int)>(dlsym(handle, "ggml_get_type_traits_cpu"));
        if (init) init();
    }
    bool ok() const { return traits != nullptr; }
};

}  // namespace

int main(int argc, char** argv) {
    int threads = 0;
    int64_t mib = 128;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (std::string(argv[i]) == "--threads") threads = std::atoi(argv[i + 1]);
        if (std::string(argv[i]) == "--mib") mib = std::atoll(argv[i + 1]);
    }
    ThreadPool pool(threads);
    std::printf("moerig CPU kernels: %d threads, %lld MiB weight matrices\n", pool.num_threads(),
                static_cast<long long>(mib));

    std::vector<uint8_t> big(mib << 20, 1);
    const double read_bw = read_bandwidth(big, pool);
    const double copy_bw = memcpy_bandwidth(big, pool);
    std::printf("memory: read %.1f GB/s, memcpy %.1f GB/s (read+write)\n\n", read_bw, copy_bw);
    big = {};

    // ---- decode GEMV ---------------------------------------------------------------------------------
    const int64_t cols = 4096;
    const DType types[] = {DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_0, DType::Q4_0, DType::MXFP4,
                           DType::Q3_K, DType::Q2_K, DType::F16,  DType::BF16, DType::F32};
    std::printf("%-6s %10s %10s %9s %12s\n", "GEMV", "rows", "us/call", "GB/s", "vs read BW");
    const auto x = random_floats(cols * 128, 2, 1.0f);
    for (DType t : types) {
        const size_t rb = row_bytes(t, cols);
        const int64_t rows = std::max<int64_t>(64, ((mib << 20) / rb) / 64 * 64);
        std::vector<uint8_t> w(rb * rows);
        {
            // Quantise a 256-row pattern and tile it: realistic bytes without minutes of quantisation.
            const auto src = random_floats(cols * 256, 1, 0.05f);
            for (int64_t r = 0; r < 256; ++r) quantize_row(t, src.data() + r * cols, w.data() + r * rb, cols);
            for (int64_t r = 256; r < rows; ++r) std::memcpy(w.data() + r * rb, w.data() + (r % 256) * rb, rb);
        }
        const WeightView view = WeightView::dense(t, rows, cols, w.data());
        std::vector<float> y(rows), y_ref(64);
        // Validate: the first 64 rows against the reference.
        matmul(view, x.data(), 1, y.data(), pool);
        matmul_ref(view.slice_rows(0, 64), x.data(), 1, y_ref.data());
        double err = 0, ref = 0;
        for (int r = 0; r < 64; ++r) {
            err += (y[r] - y_ref[r]) * (y[r] - y_ref[r]);
            ref += y_ref[r] * y_ref[r];
        }
        if (!(err <= 2e-3 * ref)) {
            std::printf("%-6s VALIDATION FAILED (nmse %.3g)\n", std::string(dtype_name(t)).c_str(), err / ref);
            return 1;
        }
        const double s = best_seconds(7, [&] { matmul(view, x.data(), 1, y.data(), pool); });
        const double gbs = w.size() / s / 1e9;
        std::printf("%-6s %10lld %10.1f %9.1f %11.0f%%\n", std::string(dtype_name(t)).c_str(),
                    static_cast<long long>(rows), s * 1e6, gbs, 100.0 * gbs / read_bw);
    }

    // ---- prefill GEMM --------------------------------------------------------------------------------
    // A dense projection (2048 rows x 128 tokens) and an expert group of a 64-expert, top-8 MoE at a 64-token
    // prompt (512 rows x 8 tokens). Validated against the activation-rounded reference before timing.
    std::printf("\n%-6s %8s %8s %10s %10s\n", "GEMM", "rows", "tokens", "ms", "GFLOP/s");
    struct GemmShape {
        int64_t rows, tokens;
    };
    for (DType t : {DType::Q4_K, DType::Q8_0, DType::Q6_K, DType::F16}) {
        for (const GemmShape shape : {GemmShape{2048, 128}, GemmShape{512, 8}}) {
            const int64_t rows = shape.rows, tokens = shape.tokens;
            const size_t rb = row_bytes(t, cols);
            std::vector<uint8_t> w(rb * rows);
            const auto src = random_floats(cols * 256, 3, 0.05f);
            for (int64_t r = 0; r < rows; ++r) {
                quantize_row(t, src.data() + (r % 256) * cols, w.data() + r * rb, cols);
            }
            const WeightView view = WeightView::dense(t, rows, cols, w.data());
            std::vector<float> y(rows * tokens), y_ref(16 * tokens);
            matmul(view, x.data(), tokens, y.data(), pool);
            matmul_ref_act(view.slice_rows(0, 16), x.data(), tokens, y_ref.data());
            double err = 0, ref = 0;
            for (int64_t k = 0; k < tokens; ++k) {
                for (int r = 0; r < 16; ++r) {
                    const double d = y[k * rows + r] - y_ref[k * 16 + r];
                    err += d * d;
                    ref += static_cast<double>(y_ref[k * 16 + r]) * y_ref[k * 16 + r];
                }
            }
            if (!(err <= 1e-9 * ref)) {
                std::printf("%-6s GEMM VALIDATION FAILED (nmse %.3g)\n", std::string(dtype_name(t)).c_str(), err / ref);
                return 1;
            }
            const int reps = tokens >= 64 ? 3 : 20;
            const double s = best_seconds(reps, [&] { matmul(view, x.data(), tokens, y.data(), pool); });
            std::printf("%-6s %8lld %8lld %10.3f %10.1f\n", std::string(dtype_name(t)).c_str(),
                        static_cast<long long>(rows), static_cast<long long>(tokens), s * 1e3,
                        2.0 * rows * cols * tokens / s / 1e9);
        }
    }

    // ---- K-quant GEMM against the per-row dot products, by token count ------------------------------------
    // One thread, a 512 x 4096 expert-sized matrix: where the register-blocked GEMM (gemm_q4_k, gemm_q6_k) starts
    // to beat the per-row dot products it replaces; matmul's kGemmMinTokens* thresholds come from this table.
    struct KGemm {
        DType type;
        bool supported;
        void (*gemm)(const WeightView&, int64_t, int64_t, const void* const*, float* const*, int64_t);
    };
    std::printf("\n%-6s %8s %12s %12s %8s   (single thread, 512 rows x 4096)\n", "GEMM/dot", "tokens", "gemm us",
                "dot us", "speedup");
    for (const KGemm k :
         {KGemm{DType::Q4_K, gemm_q4_k_supported(), gemm_q4_k}, KGemm{DType::Q6_K, gemm_q6_k_supported(), gemm_q6_k}}) {
        if (!k.supported) {
            std::printf("%-6s (no integer GEMM in this build)\n", std::string(dtype_name(k.type)).c_str());
            continue;
        }
        const int64_t rows = 512, max_tokens = 6;
        const size_t rb = row_bytes(k.type, cols), xb = row_bytes(DType::Q8_K, cols);
        std::vector<uint8_t> w(rb * rows), xq(xb * max_tokens);
        const auto src = random_floats(cols * 256, 7, 0.05f);
        for (int64_t r = 0; r < rows; ++r) quantize_row(k.type, src.data() + (r % 256) * cols, w.data() + r * rb, cols);
        std::vector<const void*> acts;
        for (int64_t t = 0; t < max_tokens; ++t) {
            quantize_row(DType::Q8_K, x.data() + t * cols, xq.data() + t * xb, cols);
            acts.push_back(xq.data() + t * xb);
        }
        const WeightView view = WeightView::dense(k.type, rows, cols, w.data());
        const VecDotFn dot = vec_dot_fn(k.type);
        std::vector<float> y(rows * max_tokens), y_dot(rows * max_tokens);
        std::vector<float*> ys;
        for (int64_t t = 0; t < max_tokens; ++t) ys.push_back(y.data() + t * rows);
        auto run_dot = [&](int64_t tokens) {
            for (int64_t r = 0; r < rows; ++r) {
                for (int64_t t = 0; t < tokens; ++t) y_dot[t * rows + r] = dot(view.row(r), acts[t], cols);
            }
        };
        k.gemm(view, 0, rows, acts.data(), ys.data(), max_tokens);
        run_dot(max_tokens);
        double err = 0, ref = 0;
        for (size_t i = 0; i < y.size(); ++i) {
            err += static_cast<double>(y[i] - y_dot[i]) * (y[i] - y_dot[i]);
            ref += static_cast<double>(y_dot[i]) * y_dot[i];
        }
        if (!(err <= 1e-11 * ref)) {
            std::printf("%-6s GEMM/dot VALIDATION FAILED (nmse %.3g)\n", std::string(dtype_name(k.type)).c_str(),
                        err / ref);
            return 1;
        }
        for (int64_t tokens = 1; tokens <= max_tokens; ++tokens) {
            const double s_gemm = best_seconds(20, [&] { k.gemm(view, 0, rows, acts.data(), ys.data(), tokens); });
            const double s_dot = best_seconds(20, [&] { run_dot(tokens); });
            std::printf("%-6s %8lld %12.1f %12.1f %7.2fx\n", std::string(dtype_name(k.type)).c_str(),
                        static_cast<long long>(tokens), s_gemm * 1e6, s_dot * 1e6, s_dot / s_gemm);
        }
    }

    // ---- peer: ggml's vec_dot on the same bytes, one thread, L2-resident rows ----------------------------
    GgmlCpu ggml(std::getenv("MOERIG_GGML_CPU_LIB"));
    if (!ggml.ok()) {
        std::printf("\n(set MOERIG_GGML_CPU_LIB=/path/to/libggml-cpu.so to compare dot products with llama.cpp's)\n");
        return 0;
    }
    std::printf("\n%-6s %12s %12s %8s   (single thread, 64 rows x 4096, in cache)\n", "dot", "moerig ns", "ggml ns",
                "ratio");
    for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_0, DType::Q4_0, DType::MXFP4, DType::F16}) {
        const auto* tr = ggml.traits(static_cast<int>(t));
        if (!tr || !tr->vec_dot || !tr->from_float) continue;
        const DType act = activation_type(t);
        const int64_t rows = 64;
        const size_t rb = row_bytes(t, cols);
        std::vector<uint8_t> w(rb * rows);
        const auto src = random_floats(cols * rows, 5, 0.05f);
        for (int64_t r = 0; r < rows; ++r) quantize_row(t, src.data() + r * cols, w.data() + r * rb, cols);
        // ggml's activation type may differ for float weights (it converts x to F16/BF16): use its own.
        std::vector<uint8_t> xg(row_bytes(static_cast<DType>(tr->vec_dot_type), cols));
        auto* q_from = ggml.traits(tr->vec_dot_type)->from_float;
        if (q_from) q_from(x.data(), xg.data(), cols);
        std::vector<uint8_t> xm(row_bytes(act, cols));
        quantize_row(act, x.data(), xm.data(), cols);
        const void* xmp = act == DType::F32 ? static_cast<const void*>(x.data()) : xm.data();
        const VecDotFn dot = vec_dot_fn(t);
        volatile float sink = 0;
        const int reps = 200;
        const double s_ours = best_seconds(5, [&] {
            for (int k = 0; k < reps; ++k) {
                for (int64_t r = 0; r < rows; ++r) sink = sink + dot(w.data() + r * rb, xmp, cols);
            }
        });
        const double s_ggml = best_seconds(5, [&] {
            for (int k = 0; k < reps; ++k) {
                for (int64_t r = 0; r < rows; ++r) {
                    float s;
                    tr->vec_dot(static_cast<int>(cols), &s, 0, w.data() + r * rb, 0, xg.data(), 0, 1);
                    sink = sink + s;
                }
            }
        });
        const double per = 1e9 / (reps * rows);
        std::printf("%-6s %12.1f %12.1f %7.2fx\n", std::string(dtype_name(t)).c_str(), s_ours * per, s_ggml * per,
                    s_ggml / s_ours);
    }
    return 0;
}
