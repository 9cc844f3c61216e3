// Quantised GEMV for decode: a CTA owns kRows output rows, its warps split the row's blocks, and the lanes
// of a warp decode consecutive parts of a block against x held in registers, so one load of x serves kRows
// rows. When rows are 16-byte aligned the CTA first stages a chunk of its rows into shared memory with
// coalesced 128-bit loads (many in flight per thread) and decodes from there. Float accumulation.
#include <cstdio>

#include "kernels/cuda/check.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/op_error.h"
#include "kernels/cuda/quant_dev.cuh"

namespace moerig::kernels::cuda {
namespace {

using dev::Quant;
using moerig::DType;

constexpr int kWarps = 4;
constexpr int kRows = 4;
constexpr int kMaxSlotsPerLaunch = 65535;

struct GemvParams {
    const uint8_t* w;
    int64_t row_bytes;
    int64_t matrix_bytes;
    const int32_t* ids;  // nullptr: every slot uses matrix 0
    int64_t num_rows;
    int num_cols;
    int num_blocks;
    const float* x;
    int64_t x_stride;  // between slots' inputs
    int64_t slots_per_x;
    int64_t x_vec_stride;  // between vectors of one slot
    float* y;
    int64_t y_stride;
    int64_t y_vec_stride;
};

template <DType T>
__device__ __forceinline__ void load_x(const float* xb, int part, int valid, float* xs) {
    using Q = Quant<T>;
#pragma unroll
    for (int run = 0; run < Q::kRuns; ++run) {
        const int c = Q::col(part, run);
        if constexpr (Q::kRunLen == 4) {
            const float4 f = *reinterpret_cast<const float4*>(xb + c);
            xs[run * 4 + 0] = f.x;
            xs[run * 4 + 1] = f.y;
            xs[run * 4 + 2] = f.z;
            xs[run * 4 + 3] = f.w;
        } else if constexpr (Q::kRunLen == 2) {
            const float2 f = *reinterpret_cast<const float2*>(xb + c);
            xs[run * 2 + 0] = f.x;
            xs[run * 2 + 1] = f.y;
        } else {
            xs[run] = (!Q::kBounded || c < valid) ? xb[c] : 0.0f;
        }
    }
}

template <DType T, int NV>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(GemvParams p) {
    using Q = Quant<T>;
    constexpr int kVals = Q::kRuns * Q::kRunLen;
    constexpr int kBlocksPerWarp = 32 / Q::kParts;
    const int warp = static_cast<int>(threadIdx.x) / 32;
    const int lane = static_cast<int>(threadIdx.x) % 32;
    const int part = lane % Q::kParts;
    const int sub = lane / Q::kParts;
    const int64_t slot = blockIdx.y;
    const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRows;
    float* y = p.y + slot * p.y_stride;

    const uint8_t* w = p.w;
    if (p.ids != nullptr) {
        const int32_t e = p.ids[slot];
        if (e < 0) {  // expert not held here: defined zeros, so a combine may read the slot
            const int t = static_cast<int>(threadIdx.x);
            if (t < kRows * NV && row0 + t / NV < p.num_rows) y[(t % NV) * p.y_vec_stride + row0 + t / NV] = 0.0f;
            return;
        }
        w += static_cast<int64_t>(e) * p.matrix_bytes;
    }
    const float* x = p.x + (slot / p.slots_per_x) * p.x_stride;

    float acc[kRows][NV];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
        for (int v = 0; v < NV; ++v) acc[r][v] = 0.0f;

    for (int b = warp * kBlocksPerWarp + sub; b < p.num_blocks; b += kWarps * kBlocksPerWarp) {
        const int valid = p.num_cols - b * Q::kBlockElems;
        float xs[NV][kVals];
#pragma unroll
        for (int v = 0; v < NV; ++v) {
            load_x<T>(x + v * p.x_vec_stride + static_cast<int64_t>(b) * Q::kBlockElems, part, valid, xs[v]);
        }
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
            if (row0 + r >= p.num_rows) break;  // uniform across the CTA
            const uint8_t* blk = w + (row0 + r) * p.row_bytes + static_cast<int64_t>(b) * Q::kBlockBytes;
            float wv[kVals];
            if (Q::kBounded && part >= valid) {
#pragma unroll
                for (int i = 0; i < kVals; ++i) wv[i] = 0.0f;
            } else {
                Q::decode(blk, part, wv);
            }
#pragma unroll
            for (int v = 0; v < NV; ++v)
#pragma unroll
                for (int i = 0; i < kVals; ++i) acc[r][v] = fmaf(wv[i], xs[v][i], acc[r][v]);
        }
    }

    __shared__ float partial[kWarps][kRows * NV];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
#pragma unroll
        for (int v = 0; v < NV; ++v) {
            float s = acc[r][v];
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
            if (lane == 0) partial[warp][r * NV + v] = s;
        }
    }
    __syncthreads();
    const int t = static_cast<int>(threadIdx.x);
    if (t < kRows * NV) {
        const int r = t / NV, v = t % NV;
        if (row0 + r < p.num_rows) {
            float s = 0.0f;
#pragma unroll
            for (int wi = 0; wi < kWarps; ++wi) s += partial[wi][t];
            y[v * p.y_vec_stride + row0 + r] = s;
        }
    }
}

/// Blocks per staged chunk: about 2-3 KiB per row, and a multiple of 16 bytes for every type.
template <DType T>
constexpr int chunk_blocks() {
    switch (T) {
        case DType::F16:
        case DType::BF16:
            return 32;
        case DType::Q8_0:
            return 64;
        case DType::Q4_0:
        case DType::MXFP4:
            return 128;
        default:  // F32, Q4_K, Q5_K, Q6_K
            return 16;
    }
}

/// Number of uint4s of one row's chunk that starts chunk_off bytes into a row of row_bytes (both multiples of 16).
template <int kChunkVecs>
__device__ __forceinline__ int chunk_vecs(int64_t row_bytes, int64_t chunk_off) {
    const int64_t left = (row_bytes - chunk_off) / 16;
    return left < kChunkVecs ? static_cast<int>(left) : kChunkVecs;
}

/// Loads the CTA's rows [0, rows_here) of the chunk at chunk_off into buf: thread t takes uint4 number
/// t + i * blockDim.x of the rows' concatenated chunks, so consecutive lanes read consecutive 16 bytes.
template <int kChunkVecs, int kCopyIters>
__device__ __forceinline__ void staged_load(uint4* buf, const uint8_t* wrow0, int64_t row_bytes, int64_t chunk_off,
                                            int rows_here) {
    const int nvec = chunk_vecs<kChunkVecs>(row_bytes, chunk_off);
#pragma unroll
    for (int i = 0; i < kCopyIters; ++i) {
        const int idx = static_cast<int>(threadIdx.x) + i * kWarps * 32;
        const int r = idx / kChunkVecs;
        const int c = idx - r * kChunkVecs;
        if (r < rows_here && c < nvec) {
            buf[i] = __ldg(reinterpret_cast<const uint4*>(wrow0 + r * row_bytes + chunk_off) + c);
        }
    }
}

/// As gemv_kernel, but the CTA's kRows rows are staged chunk by chunk into shared memory with uint4 loads.
/// Requires w, row_bytes and matrix_bytes to be multiples of 16 bytes.
template <DType T, int NV>
__global__ void __launch_bounds__(kWarps * 32) gemv_staged_kernel(GemvParams p) {
    using Q = Quant<T>;
    constexpr int kVals = Q::kRuns * Q::kRunLen;
    constexpr int kBlocksPerWarp = 32 / Q::kParts;
    constexpr int kChunkBlocks = chunk_blocks<T>();
    constexpr int kChunkBytes = kChunkBlocks * Q::kBlockBytes;
    static_assert(kChunkBytes % 16 == 0, "a staged chunk must be whole uint4s");
    constexpr int kChunkVecs = kChunkBytes / 16;
    constexpr int kThreads = kWarps * 32;
    constexpr int kCopyIters = (kRows * kChunkVecs + kThreads - 1) / kThreads;
    __shared__ __align__(16) uint8_t tile[kRows * kChunkBytes];

    const int warp = static_cast<int>(threadIdx.x) / 32;
    const int lane = static_cast<int>(threadIdx.x) % 32;
    const int part = lane % Q::kParts;
    const int sub = lane / Q::kParts;
    const int64_t slot = blockIdx.y;
    const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRows;
    float* y = p.y + slot * p.y_stride;

    const uint8_t* w = p.w;
    if (p.ids != nullptr) {
        const int32_t e = p.ids[slot];
        if (e < 0) {  // uniform across the CTA: it leaves before any barrier
            const int t = static_cast<int>(threadIdx.x);
            if (t < kRows * NV && row0 + t / NV < p.num_rows) y[(t % NV) * p.y_vec_stride + row0 + t / NV] = 0.0f;
            return;
        }
        w += static_cast<int64_t>(e) * p.matrix_bytes;
    }
    const float* x = p.x + (slot / p.slots_per_x) * p.x_stride;
    const int64_t rows_left = p.num_rows - row0;
    const int rows_here = rows_left < kRows ? static_cast<int>(rows_left) : kRows;
    const uint8_t* wrow0 = w + row0 * p.row_bytes;

    float acc[kRows][NV];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
        for (int v = 0; v < NV; ++v) acc[r][v] = 0.0f;

    // Software pipeline: chunk i+1 is loaded into registers while chunk i is decoded from shared memory.
    uint4 buf[kCopyIters];
    staged_load<kChunkVecs, kCopyIters>(buf, wrow0, p.row_bytes, 0, rows_here);
    for (int cb = 0; cb < p.num_blocks; cb += kChunkBlocks) {
        const int nbc = p.num_blocks - cb < kChunkBlocks ? p.num_blocks - cb : kChunkBlocks;
        const int nvec = chunk_vecs<kChunkVecs>(p.row_bytes, static_cast<int64_t>(cb) * Q::kBlockBytes);
#pragma unroll
        for (int i = 0; i < kCopyIters; ++i) {
            const int idx = static_cast<int>(threadIdx.x) + i * kThreads;
            const int r = idx / kChunkVecs;
            const int c = idx - r * kChunkVecs;
            if (r < rows_here && c < nvec) reinterpret_cast<uint4*>(tile + r * kChunkBytes)[c] = buf[i];
        }
        __syncthreads();
        if (cb + kChunkBlocks < p.num_blocks) {
            staged_load<kChunkVecs, kCopyIters>(buf, wrow0, p.row_bytes,
                                                static_cast<int64_t>(cb + kChunkBlocks) * Q::kBlockBytes, rows_here);
        }

        for (int bl = warp * kBlocksPerWarp + sub; bl < nbc; bl += kWarps * kBlocksPerWarp) {
            const int b = cb + bl;
            const int valid = p.num_cols - b * Q::kBlockElems;
            float xs[NV][kVals];
#pragma unroll
            for (int v = 0; v < NV; ++v) {
                load_x<T>(x + v * p.x_vec_stride + static_cast<int64_t>(b) * Q::kBlockElems, part, valid, xs[v]);
            }
#pragma unroll
            for (int r = 0; r < kRows; ++r) {
                if (r >= rows_here) break;  // uniform across the CTA
                const uint8_t* blk = tile + r * kChunkBytes + bl * Q::kBlockBytes;
                float wv[kVals];
                if (Q::kBounded && part >= valid) {
#pragma unroll
                    for (int i = 0; i < kVals; ++i) wv[i] = 0.0f;
                } else {
                    Q::decode(blk, part, wv);
                }
#pragma unroll
                for (int v = 0; v < NV; ++v)
#pragma unroll
                    for (int i = 0; i < kVals; ++i) acc[r][v] = fmaf(wv[i], xs[v][i], acc[r][v]);
            }
        }
        __syncthreads();  // the tile is overwritten by the next chunk
    }

    __shared__ float partial[kWarps][kRows * NV];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
#pragma unroll
        for (int v = 0; v < NV; ++v) {
            float s = acc[r][v];
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
            if (lane == 0) partial[warp][r * NV + v] = s;
        }
    }
    __syncthreads();
    const int t = static_cast<int>(threadIdx.x);
    if (t < kRows * NV) {
        const int r = t / NV, v = t % NV;
        if (r < rows_here) {
            float s = 0.0f;
#pragma unroll
            for (int wi = 0; wi < kWarps; ++wi) s += partial[wi][t];
            y[v * p.y_vec_stride + row0 + r] = s;
        }
    }
}

template <DType T, int NV>
void launch_gemv(const GemvParams& p, dim3 grid, bool staged, cudaStream_t stream) {
    if (staged) {
        gemv_staged_kernel<T, NV><<<grid, kWarps * 32, 0, stream>>>(p);
    } else {
        gemv_kernel<T, NV><<<grid, kWarps * 32, 0, stream>>>(p);
    }
}

struct GemvLaunch {
    GemvParams p;
    int nv;
    int64_t num_slots;
    cudaStream_t stream;
    const char* op;

    template <DType T>
    void operator()() {
        using Q = Quant<T>;
        if (!Q::kBounded && p.num_cols % Q::kBlockElems != 0) {
            throw_bad_args(op, "num_cols must be a multiple of the type's block size");
        }
        const int align = (T == DType::Q4_K || T == DType::Q5_K || T == DType::F32) ? 4 : (T == DType::MXFP4) ? 1 : 2;
        if (reinterpret_cast<uintptr_t>(p.w) % align != 0 || p.row_bytes % align != 0 || p.matrix_bytes % align != 0) {
            throw_bad_args(op, "weights are not aligned to the block type's word size");
        }
        if (Q::kRunLen > 1 &&
            (reinterpret_cast<uintptr_t>(p.x) % 16 != 0 || p.x_stride % 4 != 0 || p.x_vec_stride % 4 != 0)) {
            throw_bad_args(op, "x must be 16-byte aligned with strides that are multiples of 4 floats");
        }
        p.num_blocks = (p.num_cols + Q::kBlockElems - 1) / Q::kBlockElems;
        const dim3 grid(static_cast<unsigned>((p.num_rows + kRows - 1) / kRows), static_cast<unsigned>(num_slots));
        const bool staged =
            reinterpret_cast<uintptr_t>(p.w) % 16 == 0 && p.row_bytes % 16 == 0 && p.matrix_bytes % 16 == 0;
        switch (nv) {
            case 1:
                launch_gemv<T, 1>(p, grid, staged, stream);
                break;
            case 2:
                launch_gemv<T, 2>(p, grid, staged, stream);
                break;
            case 4:
                launch_gemv<T, 4>(p, grid, staged, stream);
                break;
            default:
                launch_gemv<T, 8>(p, grid, staged, stream);
                break;
        }
        MOERIG_CUDA_CHECK(cudaGetLastError());
    }
};

int64_t weight_row_bytes(DType type, int64_t num_cols) {
    const auto& t = moerig::dtype_traits(type);
    return num_cols / t.block_elems * t.block_bytes + (num_cols % t.block_elems) * t.block_bytes;
}

}  // namespace

bool gemv_supported(DType type) {
    switch (type) {
        case DType::F32:
        case DType::F16:
        case DType::BF16:
        case DType::Q8_0:
        case DType::Q4_0:
        case DType::MXFP4:
        case DType::Q4_K:
        case DType::Q5_K:
        case DType::Q6_K:
            return true;
        default:
            return false;
    }
}

void gemv(DType type, const void* w, int64_t num_rows, int64_t num_cols, const float* x, int64_t num_vecs, float* y,
          cudaStream_t stream) {
    constexpr const char* kOp = "cuda::gemv";
    MOERIG_OP_REQUIRE(num_rows > 0 && num_cols > 0 && num_cols < (1 << 30), kOp);
    if (num_vecs <= 0) return;
    if (!gemv_supported(type)) throw_unsupported(kOp, "weight type has no CUDA decoder");
    int64_t done = 0;
    while (done < num_vecs) {
        const int64_t left = num_vecs - done;
        const int nv = left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
        GemvLaunch launch{};
        launch.p.w = static_cast<const uint8_t*>(w);
        launch.p.row_bytes = weight_row_bytes(type, num_cols);
        launch.p.matrix_bytes = 0;
        launch.p.ids = nullptr;
        launch.p.num_rows = num_rows;
        launch.p.num_cols = static_cast<int>(num_cols);
        launch.p.x = x + done * num_cols;
        launch.p.x_stride = 0;
        launch.p.slots_per_x = 1;
        launch.p.x_vec_stride = num_cols;
        launch.p.y = y + done * num_rows;
        launch.p.y_stride = 0;
        launch.p.y_vec_stride = num_rows;
        launch.nv = nv;
        launch.num_slots = 1;
        launch.stream = stream;
        launch.op = kOp;
        dev::dispatch_type(type, launch);
        done += nv;
    }
}

void gemv_indexed(DType type, const void* w, int64_t matrix_bytes, int64_t num_rows, int64_t num_cols,
                  const int32_t* expert_ids, int64_t num_slots, const float* x, int64_t x_stride, int64_t slots_per_x,
                  float* y, int64_t y_stride, cudaStream_t stream) {
    constexpr const char* kOp = "cuda::gemv_indexed";
    MOERIG_OP_REQUIRE(num_rows > 0 && num_cols > 0 && num_cols < (1 << 30), kOp);
    MOERIG_OP_REQUIRE(slots_per_x >= 1 && y_stride >= num_rows && expert_ids != nullptr, kOp);
    MOERIG_OP_REQUIRE(num_slots <= kMaxSlotsPerLaunch, kOp);
    if (num_slots <= 0) return;
    if (!gemv_supported(type)) throw_unsupported(kOp, "weight type has no CUDA decoder");
    GemvLaunch launch{};
    launch.p.w = static_cast<const uint8_t*>(w);
    launch.p.row_bytes = weight_row_bytes(type, num_cols);
    launch.p.matrix_bytes = matrix_bytes;
    launch.p.ids = expert_ids;
    launch.p.num_rows = num_rows;
    launch.p.num_cols = static_cast<int>(num_cols);
    launch.p.x = x;
    launch.p.x_stride = x_stride;
    launch.p.slots_per_x = slots_per_x;
    launch.p.x_vec_stride = 0;
    launch.p.y = y;
    launch.p.y_stride = y_stride;
    launch.p.y_vec_stride = 0;
    launch.nv = 1;
    launch.num_slots = num_slots;
    launch.stream = stream;
    launch.op = kOp;
    dev::dispatch_type(type, launch);
}

}  // namespace moerig::kernels::cuda
