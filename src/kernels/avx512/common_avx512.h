// What the AVX-512 kernels share besides requantization (requant_avx512.h): LOWBIT_INLINE and the
// VNNI broadcast multiply-add. Header-only: include it only from files compiled with AVX-512 VNNI.
#pragma once

#include <immintrin.h>

#include <cstdint>

#define LOWBIT_INLINE inline __attribute__((always_inline))

namespace lowbit {
namespace avx512 {

// acc += x (u8) * the weight quad at p (s8) broadcast to 16 lanes, as one vpdpbusd with an
// embedded memory broadcast. GCC 12 turns _mm512_set1_epi32(*p) into a load to a general register
// and a vpbroadcastd from it: two more instructions per vpdpbusd, which made the direct conv
// kernel issue-bound at less than half the VNNI rate.
LOWBIT_INLINE __m512i dpbusd_bcast(__m512i acc, __m512i x, const int32_t* p) {
  __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(x), "m"(*p));
  return acc;
}

}  // namespace avx512
}  // namespace lowbit
