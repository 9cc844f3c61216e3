// AVX-512 VNNI for the integer GEMM micro-kernels (gemm_q8_0.cpp, gemm_k_tiles.h): defines MOERIG_GEMM_VNNI512 and
// includes <immintrin.h> when the target has AVX-512 F/BW/VNNI and F16C. Only for the translation units of those
// kernels: it also turns off, for the rest of the unit, GCC 12's "uninitialised" warnings, which its AVX-512
// intrinsics raise by starting some results from a self-initialised "undefined" vector (a known false positive of
// the headers, reported once the intrinsics are inlined).
#pragma once

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && defined(__F16C__)
#define MOERIG_GEMM_VNNI512 1
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#endif
