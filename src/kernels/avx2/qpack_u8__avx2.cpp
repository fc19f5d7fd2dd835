// Packing a plain u8 matrix into the GEMM layout [K4/4][N][4], AVX2, byte-equal to qpack_u8_ref
// (contract in kernels/qkernels.h). Also used by the AVX-512 table, and by qim2col_u8__avx2 for
// convolutions whose kernel covers the whole image (LeNet's conv3). Not here: im2col.
//  - batch-major X (rs == 1: column j is contiguous): each packed group of 4 is one 4-byte copy.
//  - row-major X (cs == 1): four rows interleaved byte-wise, 16 columns per step.
//  - other strides: the reference.
#include <immintrin.h>

#include <cstring>

#include "kernels/qkernels.h"

namespace lowbit {

void qpack_u8__avx2(const uint8_t* x, int64_t rs, int64_t cs, int k, int n, uint8_t* out) {
  const int nkb = qk4(k) / 4, full = k / 4, rest = k - 4 * full;
  const int64_t kb_stride = int64_t{n} * 4;
  if (rs == 1) {
    for (int j = 0; j < n; ++j) {
      const uint8_t* col = x + j * cs;
      uint8_t* o = out + int64_t{j} * 4;
      for (int kb = 0; kb < full; ++kb) std::memcpy(o + kb * kb_stride, col + 4 * kb, 4);
      if (rest) {
        uint8_t last[4] = {0, 0, 0, 0};
        std::memcpy(last, col + 4 * full, static_cast<size_t>(rest));
        std::memcpy(o + full * kb_stride, last, 4);
      }
    }
    return;
  }
  if (cs != 1) {
    qpack_u8_ref(x, rs, cs, k, n, out);
    return;
  }
  alignas(16) static const uint8_t zeros[16] = {};
  for (int kb = 0; kb < nkb; ++kb) {
    const uint8_t* r[4];
    int64_t step[4];  // 1 for a real row, 0 for the zero rows k >= K
    for (int t = 0; t < 4; ++t) {
      const bool real = 4 * kb + t < k;
      r[t] = real ? x + (4 * kb + t) * rs : zeros;
      step[t] = real ? 1 : 0;
    }
    uint8_t* o = out + kb * kb_stride;
    int j = 0;
    for (; j + 16 <= n; j += 16) {
      const __m128i v0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r[0] + j * step[0]));
      const __m128i v1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r[1] + j * step[1]));
      const __m128i v2 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r[2] + j * step[2]));
      const __m128i v3 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r[3] + j * step[3]));
      const __m128i lo01 = _mm_unpacklo_epi8(v0, v1), hi01 = _mm_unpackhi_epi8(v0, v1);
      const __m128i lo23 = _mm_unpacklo_epi8(v2, v3), hi23 = _mm_unpackhi_epi8(v2, v3);
      __m128i* d = reinterpret_cast<__m128i*>(o + int64_t{j} * 4);
      _mm_storeu_si128(d + 0, _mm_unpacklo_epi16(lo01, lo23));
      _mm_storeu_si128(d + 1, _mm_unpackhi_epi16(lo01, lo23));
      _mm_storeu_si128(d + 2, _mm_unpacklo_epi16(hi01, hi23));
      _mm_storeu_si128(d + 3, _mm_unpackhi_epi16(hi01, hi23));
    }
    for (; j < n; ++j)
      for (int t = 0; t < 4; ++t) o[int64_t{j} * 4 + t] = step[t] ? r[t][j] : uint8_t{0};
  }
}

}  // namespace lowbit
