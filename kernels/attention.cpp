// Causal GQA attention over an F32 or F16 KV cache. The reference scores every visible key and normalises in double.
// The fast path gives each task one query token and a few query heads of one KV group, walks the visible keys
// in chunks (scores for the chunk, one rescale of the running sum per chunk: online softmax), so each key and
// value row is read once per task for all of its heads. F16 rows are widened in registers as they are read
// (F16C), never copied to a float cache.
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/error.h"
#include "kernels/quant.h"
#include "kernels/vec_dot.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define MOERIG_ATTN_F16C 1
#include <immintrin.h>
#endif

namespace moerig::kernels {
namespace {

constexpr int64_t kKeyChunk = 64;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

void check(const AttentionParams& p, const AttentionIo& io, const char* what) {
    MOERIG_CHECK(p.num_heads > 0 && p.num_kv_heads > 0 && p.num_heads % p.num_kv_heads == 0, ConfigError,
                 "{}: {} query heads are not a multiple of {} kv heads", what, p.num_heads, p.num_kv_heads);
    MOERIG_CHECK(p.head_dim > 0, ConfigError, "{}: head_dim must be positive, got {}", what, p.head_dim);
    for (int64_t t = 0; t < io.num_tokens; ++t) {
        const int64_t pos = io.positions ? io.positions[t] : io.kv_len - io.num_tokens + t;
        MOERIG_CHECK(pos >= 0 && pos < io.kv_len, ConfigError,
                     "{}: query {} is at position {}, outside the {} cached positions", what, t, pos, io.kv_len);
    }
    MOERIG_CHECK((io.k_f16 == nullptr) == (io.v_f16 == nullptr), ConfigError,
                 "{}: an F16 cache needs both k_f16 and v_f16", what);
    MOERIG_CHECK(io.kv_ring == 0 || (p.sliding_window > 0 && p.sliding_window <= io.kv_ring), ConfigError,
                 "{}: a ring of {} cache rows needs a sliding window of 1..{} positions, got {}", what, io.kv_ring,
                 io.kv_ring, p.sliding_window);
}

/// Element offset of position j's row (ring slot j % kv_ring when the cache is a ring).
inline int64_t row_of(const AttentionIo& io, int64_t j) {
    return io.kv_ring > 0 ? j % io.kv_ring : j;
}

// sum q[d] * k[d] with k in binary16.
float dot_f16(const float* q, const uint16_t* k, int64_t n) {
    int64_t d = 0;
    float sum = 0;
#if MOERIG_ATTN_F16C
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; d + 16 <= n; d += 16) {
        const __m256 k0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + d)));
        const __m256 k1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + d + 8)));
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), k0, acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d + 8), k1, acc1);
    }
    for (; d + 8 <= n; d += 8) {
        const __m256 k0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + d)));
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), k0, acc0);
    }
    const __m256 acc = _mm256_add_ps(acc0, acc1);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
    sum = _mm_cvtss_f32(s4);
#endif
    for (; d < n; ++d) sum += q[d] * fp16_to_fp32(k[d]);
    return sum;
}

// a[d] += w * v[d] with v in binary16.
void axpy_f16(float w, const uint16_t* v, float* a, int64_t n) {
    int64_t d = 0;
#if MOERIG_ATTN_F16C
    const __m256 wv = _mm256_set1_ps(w);
    for (; d + 8 <= n; d += 8) {
        const __m256 v8 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v + d)));
        _mm256_storeu_ps(a + d, _mm256_fmadd_ps(wv, v8, _mm256_loadu_ps(a + d)));
    }
#endif
    for (; d < n; ++d) a[d] += w * fp16_to_fp32(v[d]);
}

int64_t query_pos(const AttentionIo& io, int64_t t) {
    return io.positions ? io.positions[t] : io.kv_len - io.num_tokens + t;
}

// Visible keys [begin, end) of a query at pos.
void visible(const AttentionParams& p, int64_t pos, int64_t* begin, int64_t* end) {
    *end = pos + 1;
    *begin = p.sliding_window > 0 ? std::max<int64_t>(0, pos - p.sliding_window + 1) : 0;
}

inline float cap(const AttentionParams& p, float s) {
    return p.soft_cap > 0 ? p.soft_cap * std::tanh(s / p.soft_cap) : s;
}

}  // namespace

void attention_ref(const AttentionParams& p, const AttentionIo& io) {
    check(p, io, "attention_ref");
    const int64_t v_dim = p.v_head_dim ? p.v_head_dim : p.head_dim;
    const int64_t group = p.num_heads / p.num_kv_heads;
    std::vector<double> scores, acc(v_dim);
    for (int64_t t = 0; t < io.num_tokens; ++t) {
        int64_t j0, j1;
        visible(p, query_pos(io, t), &j0, &j1);
        for (int64_t h = 0; h < p.num_heads; ++h) {
            const int64_t kvh = h / group;
            const float* q = io.q + t * io.q_token_stride + h * io.q_head_stride;
            scores.assign(j1 - j0, 0.0);
            double max = p.sinks ? p.sinks[h] : -std::numeric_limits<double>::infinity();
            for (int64_t j = j0; j < j1; ++j) {
                const int64_t k_at = row_of(io, j) * io.k_token_stride + kvh * io.k_head_stride;
                double s = 0;
                for (int64_t d = 0; d < p.head_dim; ++d) {
                    s += static_cast<double>(q[d]) * (io.k_f16 ? fp16_to_fp32(io.k_f16[k_at + d]) : io.k[k_at + d]);
                }
                s = cap(p, static_cast<float>(s * p.scale));
                scores[j - j0] = s;
                max = std::max(max, s);
            }
            double denom = p.sinks ? std::exp(p.sinks[h] - max) : 0.0;
            for (double& s : scores) {
                s = std::exp(s - max);
                denom += s;
            }
            std::fill(acc.begin(), acc.end(), 0.0);
            for (int64_t j = j0; j < j1; ++j) {
                const int64_t v_at = row_of(io, j) * io.v_token_stride + kvh * io.v_head_stride;
                for (int64_t d = 0; d < v_dim; ++d) {
                    acc[d] += scores[j - j0] * (io.v_f16 ? fp16_to_fp32(io.v_f16[v_at + d]) : io.v[v_at + d]);
                }
            }
            float* out = io.out + t * io.out_token_stride + h * io.out_head_stride;
            for (int64_t d = 0; d < v_dim; ++d) out[d] = static_cast<float>(acc[d] / denom);
        }
    }
}

void attention(const AttentionParams& p, const AttentionIo& io, ThreadPool& pool) {
    check(p, io, "attention");
    const int64_t v_dim = p.v_head_dim ? p.v_head_dim : p.head_dim;
    const int64_t group = p.num_heads / p.num_kv_heads;
    // Split each KV group into sub-groups so that there are enough tasks for the threads (MLA: 1 kv head).
    const int64_t pairs = io.num_tokens * p.num_kv_heads;
    int64_t sub = group;
    while (sub > 1 && pairs * ((group + sub - 1) / sub) < 2 * pool.num_threads()) sub = (sub + 1) / 2;
    const int64_t subs_per_group = (group + sub - 1) / sub;
    const int64_t num_tasks = pairs * subs_per_group;
    const VecDotFn dot = vec_dot_fn(DType::F32);
    const bool half = io.k_f16 != nullptr;

    pool.parallel_tasks(num_tasks, [&](int64_t task, int) {
        const int64_t t = task / (p.num_kv_heads * subs_per_group);
        const int64_t kvh = (task / subs_per_group) % p.num_kv_heads;
        const int64_t h0 = kvh * group + (task % subs_per_group) * sub;
        const int64_t h1 = std::min(h0 + sub, (kvh + 1) * group);
        const int64_t nh = h1 - h0;
        int64_t j0, j1;
        visible(p, query_pos(io, t), &j0, &j1);

        thread_local std::vector<float> acc, scores, running;
        acc.assign(nh * v_dim, 0.0f);
        scores.resize(nh * kKeyChunk);
        running.assign(2 * nh, 0.0f);  // [max, sum] per head
        for (int64_t g = 0; g < nh; ++g) running[2 * g] = kNegInf;

        for (int64_t c0 = j0; c0 < j1; c0 += kKeyChunk) {
            const int64_t c1 = std::min(j1, c0 + kKeyChunk);
            for (int64_t j = c0; j < c1; ++j) {
                const int64_t k_at = row_of(io, j) * io.k_token_stride + kvh * io.k_head_stride;
                for (int64_t g = 0; g < nh; ++g) {
                    const float* q = io.q + t * io.q_token_stride + (h0 + g) * io.q_head_stride;
                    const float s = half ? dot_f16(q, io.k_f16 + k_at, p.head_dim) : dot(q, io.k + k_at, p.head_dim);
                    scores[g * kKeyChunk + (j - c0)] = cap(p, s * p.scale);
                }
            }
            for (int64_t g = 0; g < nh; ++g) {
                float* s = &scores[g * kKeyChunk];
                float m_chunk = kNegInf;
                for (int64_t j = 0; j < c1 - c0; ++j) m_chunk = std::max(m_chunk, s[j]);
                const float m_old = running[2 * g];
                const float m_new = std::max(m_old, m_chunk);
                float* a = &acc[g * v_dim];
                if (m_new > m_old && m_old != kNegInf) {
                    const float f = std::exp(m_old - m_new);
                    for (int64_t d = 0; d < v_dim; ++d) a[d] *= f;
                    running[2 * g + 1] *= f;
                }
                running[2 * g] = m_new;
                float sum = 0;
                for (int64_t j = 0; j < c1 - c0; ++j) {
                    s[j] = std::exp(s[j] - m_new);
                    sum += s[j];
                }
                running[2 * g + 1] += sum;
            }
            for (int64_t j = c0; j < c1; ++j) {
                const int64_t v_at = row_of(io, j) * io.v_token_stride + kvh * io.v_head_stride;
                for (int64_t g = 0; g < nh; ++g) {
                    const float w = scores[g * kKeyChunk + (j - c0)];
                    float* a = &acc[g * v_dim];
                    if (half) {
                        axpy_f16(w, io.v_f16 + v_at, a, v_dim);
                    } else {
                        const float* v = io.v + v_at;
                        for (int64_t d = 0; d < v_dim; ++d) a[d] += w * v[d];
                    }
                }
            }
        }
        for (int64_t g = 0; g < nh; ++g) {
            const int64_t h = h0 + g;
            float m = running[2 * g], l = running[2 * g + 1];
            float* a = &acc[g * v_dim];
            if (p.sinks) {
                // The sink joins the denominator only: rescale to the common max and add its weight.
                const float m_all = std::max(m, p.sinks[h]);
                const float f = m == kNegInf ? 0.0f : std::exp(m - m_all);
                l = l * f + std::exp(p.sinks[h] - m_all);
                for (int64_t d = 0; d < v_dim; ++d) a[d] *= f;
            }
            const float inv = l > 0 ? 1.0f / l : 0.0f;
            float* out = io.out + t * io.out_token_stride + h * io.out_head_stride;
            for (int64_t d = 0; d < v_dim; ++d) out[d] = a[d] * inv;
        }
    });
}

}  // namespace moerig::kernels
