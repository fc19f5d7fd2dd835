// im2col of u8 images into the packed layout with one vpermb per 16 columns (AVX-512 VBMI),
// byte-equal to qim2col_u8_ref (contract in kernels/qkernels.h). Only the stride-1 unpadded case
// (LeNet's conv1 and conv2) is here; every other case goes to qim2col_u8__avx2. This file alone is
// compiled with -mavx512vbmi (CMakeLists.txt); dispatch.cpp uses it only when cpuid shows VBMI.
//
// The AVX2 step interleaves four 16-byte tap rows with eight unpacks and four stores; here the
// four rows go into the four 128-bit lanes of one zmm and a single byte permutation puts byte c
// of lane t at 4c + t: six instructions for 64 packed bytes, which matters at batch 1.
// GCC 12 warns falsely inside inlined AVX-512 intrinsics (bug 105593); the pragma must precede the header.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernels/im2col_stride1.h"
#include "kernels/qkernels.h"

namespace lowbit {
namespace {

inline void interleave16_vbmi(const uint8_t* const* p, int x, int nreal, uint8_t* d) {
  // Byte 4c + t of the result takes byte c of lane t: index 16t + c.
  const __m512i order = _mm512_set_epi32(0x3F2F1F0F, 0x3E2E1E0E, 0x3D2D1D0D, 0x3C2C1C0C, 0x3B2B1B0B,
                                         0x3A2A1A0A, 0x39291909, 0x38281808, 0x37271707, 0x36261606,
                                         0x35251505, 0x34241404, 0x33231303, 0x32221202, 0x31211101,
                                         0x30201000);
  const __m128i zero = _mm_setzero_si128();
  const __m128i v0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[0] + x));
  const __m128i v1 = nreal > 1 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[1] + x)) : zero;
  const __m128i v2 = nreal > 2 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[2] + x)) : zero;
  const __m128i v3 = nreal > 3 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[3] + x)) : zero;
  const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(v1, v0)), _mm256_set_m128i(v3, v2), 1);
  _mm512_storeu_si512(d + 4 * x, _mm512_permutexvar_epi8(order, v));
}

}  // namespace

void qim2col_u8__avx512vbmi(const QIm2colArgs& a) {
  const bool whole_image = a.pad == 0 && a.kh == a.h && a.kw == a.w && a.in_cstride == int64_t{a.h} * a.w;
  if (a.stride == 1 && a.pad == 0 && !whole_image) {
    im2col_stride1_nopad(a, interleave16_vbmi);
    return;
  }
  qim2col_u8__avx2(a);
}

}  // namespace lowbit
