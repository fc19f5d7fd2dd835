// AVX-512 FP32 conv epilogue fused with ReLU and 2x2 max pooling, bit-equal to
// bias_relu_maxpool_f32_ref (contract in kernels/dispatch.h). Every output is one IEEE add or a
// max, so vector order changes nothing. ReLU as vmaxps(v, 0): it returns its second operand for
// a NaN or a zero of either sign, exactly what v > 0 ? v : 0 gives. The pooled values are ReLU
// outputs (no NaN, no -0), where max is order-free.
// GCC 12 warns falsely inside inlined AVX-512 intrinsics (bug 105593); the pragma must precede the header.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernels/sgemm.h"

namespace lowbit {

namespace {

inline __mmask16 first(int n) { return static_cast<__mmask16>(n <= 0 ? 0 : n >= 16 ? 0xFFFF : (1u << n) - 1); }

// Up to 16 values of one row: stores y and r (masked, or whole vectors when `whole`), returns r
// (lanes past m hold max(bias, 0)).
inline __m512 bias_relu(const float* c, __mmask16 m, bool whole, __m512 bias, float* y, float* r) {
  const __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, c), bias);
  const __m512 rv = _mm512_max_ps(v, _mm512_setzero_ps());
  if (whole) {
    _mm512_storeu_ps(y, v);
    _mm512_storeu_ps(r, rv);
  } else {
    _mm512_mask_storeu_ps(y, m, v);
    _mm512_mask_storeu_ps(r, m, rv);
  }
  return rv;
}

}  // namespace

void bias_relu_maxpool_f32__avx512(const float* c, int64_t ldc, int oh, int ow, float bias, float* y, float* r,
                                   float* q, bool spill) {
  const __m512 b = _mm512_set1_ps(bias);
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const int pw = ow / 2;
  // Rows of up to 32 values (LeNet's 28 and 10) are stored with whole vectors in row order, so an
  // overhang lands on rows written later (masked stores cost 12% of the forward pass here); past
  // the plane's end only with `spill`. Rows go in pairs, pooled from registers (reading back the
  // masked stores stalled on store forwarding).
  const bool rows_whole = ow <= 32;
  const int64_t plane = int64_t{oh} * ow;
  auto whole = [&](int row, int x) { return rows_whole && (spill || int64_t{row} * ow + x + 16 <= plane); };
  int oy = 0;
  for (; oy + 1 < oh; oy += 2) {
    const float *c0 = c + oy * ldc, *c1 = c0 + ldc;
    float *y0 = y + oy * ow, *y1 = y0 + ow, *r0 = r + oy * ow, *r1 = r0 + ow;
    for (int x = 0; x < ow; x += 32) {
      const int n = ow - x < 32 ? ow - x : 32;
      const __mmask16 lo = first(n), hi = first(n - 16);
      const __m512 a0 = bias_relu(c0 + x, lo, whole(oy, x), b, y0 + x, r0 + x);
      const __m512 a1 = hi ? bias_relu(c0 + x + 16, hi, whole(oy, x + 16), b, y0 + x + 16, r0 + x + 16) : a0;
      const __m512 b0 = bias_relu(c1 + x, lo, whole(oy + 1, x), b, y1 + x, r1 + x);
      const __m512 b1 = hi ? bias_relu(c1 + x + 16, hi, whole(oy + 1, x + 16), b, y1 + x + 16, r1 + x + 16) : b0;
      const __m512 m0 = _mm512_max_ps(a0, b0), m1 = _mm512_max_ps(a1, b1);
      const __m512 p = _mm512_max_ps(_mm512_permutex2var_ps(m0, even, m1), _mm512_permutex2var_ps(m0, odd, m1));
      const int count = pw - x / 2 < 16 ? pw - x / 2 : 16;  // pooled columns of this step
      _mm512_mask_storeu_ps(q + (oy / 2) * pw + x / 2, first(count), p);
    }
  }
  if (oy < oh)  // a last odd row: not pooled
    for (int x = 0; x < ow; x += 16)
      bias_relu(c + oy * ldc + x, first(ow - x), whole(oy, x), b, y + oy * ow + x, r + oy * ow + x);
}

}  // namespace lowbit
