// AVX-512 FP32 conv epilogue fused with ReLU and 2x2 max pooling, and its backward, bit-equal to
// bias_relu_maxpool_f32_ref and relu_maxpool_backward_f32_ref (contracts in kernels/dispatch.h). Every output is one IEEE add or a
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

// Rows of up to 32 values in pairs: the four positions of 16 windows de-interleaved into four
// vectors (even / odd columns of the two rows), the first maximum chosen with the reference's
// strict compares in its order, and the gradient put back at that position where y > 0 (or
// always, with y null).
void relu_maxpool_backward_f32__avx512(const float* y, const float* r, const float* dq, int oh, int ow, float* dy) {
  if (ow > 32) {
    relu_maxpool_backward_f32_ref(y, r, dq, oh, ow, dy);
    return;
  }
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);  // interleave
  const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512 zero = _mm512_setzero_ps();
  const int pw = ow / 2;
  const __mmask16 m0 = first(ow), m1 = first(ow - 16), mq = first(pw);
  const __mmask16 pooled_lo = first(2 * pw), pooled_hi = first(2 * pw - 16);  // columns inside windows
  int oy = 0;
  for (; oy + 1 < oh; oy += 2) {
    const float *ra = r + oy * ow, *rb = ra + ow, *ya = y ? y + oy * ow : nullptr, *yb = y ? ya + ow : nullptr;
    auto split = [&](const float* row, __m512& ev, __m512& od) {
      const __m512 v0 = _mm512_maskz_loadu_ps(m0, row), v1 = _mm512_maskz_loadu_ps(m1, row + 16);
      ev = _mm512_permutex2var_ps(v0, even, v1);
      od = _mm512_permutex2var_ps(v0, odd, v1);
    };
    __m512 r00, r01, r10, r11, y00, y01, y10, y11;  // r[row][column parity] of 16 windows
    split(ra, r00, r01);
    split(rb, r10, r11);
    if (y) {
      split(ya, y00, y01);
      split(yb, y10, y11);
    } else {  // no ReLU: every y counts as positive
      y00 = y01 = y10 = y11 = _mm512_set1_ps(1.0f);
    }
    // best = 0; r01 > best -> 1; r10 > r[best] -> 2; r11 > r[best] -> 3
    __m512 bv = r00;
    const __mmask16 g1 = _mm512_cmp_ps_mask(r01, bv, _CMP_GT_OQ);
    bv = _mm512_mask_mov_ps(bv, g1, r01);
    const __mmask16 g2 = _mm512_cmp_ps_mask(r10, bv, _CMP_GT_OQ);
    bv = _mm512_mask_mov_ps(bv, g2, r10);
    const __mmask16 g3 = _mm512_cmp_ps_mask(r11, bv, _CMP_GT_OQ);
    const __mmask16 s3 = g3, s2 = g2 & ~g3, s1 = g1 & ~g2 & ~g3, s0 = ~(g1 | g2 | g3);
    const __m512 g = _mm512_add_ps(zero, _mm512_maskz_loadu_ps(mq, dq + (oy / 2) * pw));
    auto pick = [&](__mmask16 sel, __m512 yv) {
      return _mm512_maskz_mov_ps(sel & _mm512_cmp_ps_mask(yv, zero, _CMP_GT_OQ), g);
    };
    const __m512 d00 = pick(s0, y00), d01 = pick(s1, y01), d10 = pick(s2, y10), d11 = pick(s3, y11);
    float *da = dy + oy * ow, *db = da + ow;
    _mm512_mask_storeu_ps(da, m0, _mm512_maskz_permutex2var_ps(pooled_lo, d00, lo, d01));
    _mm512_mask_storeu_ps(da + 16, m1, _mm512_maskz_permutex2var_ps(pooled_hi, d00, hi, d01));
    _mm512_mask_storeu_ps(db, m0, _mm512_maskz_permutex2var_ps(pooled_lo, d10, lo, d11));
    _mm512_mask_storeu_ps(db + 16, m1, _mm512_maskz_permutex2var_ps(pooled_hi, d10, hi, d11));
  }
  if (oy < oh)  // a last odd row: outside every window
    for (int x = 0; x < ow; x += 16) _mm512_mask_storeu_ps(dy + oy * ow + x, first(ow - x), zero);
}

// Training's epilogue: rows in pairs, 32 columns (16 windows) per step, nothing but q and the
// winning positions stored. The first maximum is chosen with the reference's strict compares in
// its order; ReLU as vmaxps(v, 0), as above.
void bias_relu_maxpool_win_f32__avx512(const float* c, int64_t ldc, int oh, int ow, float bias, float* q,
                                       uint8_t* win) {
  const __m512 b = _mm512_set1_ps(bias), zero = _mm512_setzero_ps();
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const int ph = oh / 2, pw = ow / 2;
  auto relu = [&](const float* p, __mmask16 m) { return _mm512_max_ps(_mm512_add_ps(_mm512_maskz_loadu_ps(m, p), b), zero); };
  for (int py = 0; py < ph; ++py) {
    const float *c0 = c + 2 * py * ldc, *c1 = c0 + ldc;
    for (int x = 0; x < 2 * pw; x += 32) {
      const int n = 2 * pw - x < 32 ? 2 * pw - x : 32;  // columns inside this step's windows
      const __mmask16 lo = first(n), hi = first(n - 16), mq = first(n / 2);
      const __m512 a0 = relu(c0 + x, lo), a1 = relu(c0 + x + 16, hi);
      const __m512 b0 = relu(c1 + x, lo), b1 = relu(c1 + x + 16, hi);
      const __m512 r01 = _mm512_permutex2var_ps(a0, odd, a1), r10 = _mm512_permutex2var_ps(b0, even, b1);
      const __m512 r11 = _mm512_permutex2var_ps(b0, odd, b1);
      __m512 bv = _mm512_permutex2var_ps(a0, even, a1);
      __m512i idx = _mm512_setzero_si512();
      const __mmask16 g1 = _mm512_cmp_ps_mask(r01, bv, _CMP_GT_OQ);
      bv = _mm512_mask_mov_ps(bv, g1, r01);
      idx = _mm512_mask_mov_epi32(idx, g1, _mm512_set1_epi32(1));
      const __mmask16 g2 = _mm512_cmp_ps_mask(r10, bv, _CMP_GT_OQ);
      bv = _mm512_mask_mov_ps(bv, g2, r10);
      idx = _mm512_mask_mov_epi32(idx, g2, _mm512_set1_epi32(2));
      const __mmask16 g3 = _mm512_cmp_ps_mask(r11, bv, _CMP_GT_OQ);
      bv = _mm512_mask_mov_ps(bv, g3, r11);
      idx = _mm512_mask_mov_epi32(idx, g3, _mm512_set1_epi32(3));
      idx = _mm512_mask_mov_epi32(idx, _mm512_cmp_ps_mask(bv, zero, _CMP_LE_OQ), _mm512_set1_epi32(kNoWin));
      _mm512_mask_storeu_ps(q + py * pw + x / 2, mq, bv);
      _mm_mask_storeu_epi8(win + py * pw + x / 2, mq, _mm512_cvtepi32_epi8(idx));
    }
  }
}

// Its backward: 16 windows per step, the gradient put at the winning position of each, the
// other three and every column or row outside the windows zero.
void relu_maxpool_backward_win_f32__avx512(const uint8_t* win, const float* dq, int oh, int ow, float* dy) {
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);  // interleave
  const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512 zero = _mm512_setzero_ps();
  const int ph = oh / 2, pw = ow / 2;
  for (int py = 0; py < ph; ++py) {
    float *da = dy + 2 * py * ow, *db = da + ow;
    for (int x = 0; x < ow; x += 32) {
      const int n = ow - x < 32 ? ow - x : 32;             // columns stored
      const int count = pw - x / 2 < 16 ? pw - x / 2 : 16;  // windows
      const __mmask16 mq = first(count), in_lo = first(2 * count), in_hi = first(2 * count - 16);
      const __m512i idx = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mq, win + py * pw + x / 2));
      const __m512 g = _mm512_add_ps(zero, _mm512_maskz_loadu_ps(mq, dq + py * pw + x / 2));
      auto at = [&](int w) { return _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(idx, _mm512_set1_epi32(w)), g); };
      const __m512 d00 = at(0), d01 = at(1), d10 = at(2), d11 = at(3);
      _mm512_mask_storeu_ps(da + x, first(n), _mm512_maskz_permutex2var_ps(in_lo, d00, lo, d01));
      _mm512_mask_storeu_ps(da + x + 16, first(n - 16), _mm512_maskz_permutex2var_ps(in_hi, d00, hi, d01));
      _mm512_mask_storeu_ps(db + x, first(n), _mm512_maskz_permutex2var_ps(in_lo, d10, lo, d11));
      _mm512_mask_storeu_ps(db + x + 16, first(n - 16), _mm512_maskz_permutex2var_ps(in_hi, d10, hi, d11));
    }
  }
  if (oh % 2)  // a last odd row: outside every window
    for (int x = 0; x < ow; x += 16) _mm512_mask_storeu_ps(dy + (oh - 1) * ow + x, first(ow - x), zero);
}

// Plain pooling: rows in pairs, 32 columns (16 windows) per step, de-interleaved as above;
// std::max(a, b) is vmaxps(b, a) (b when b > a, else a, NaN included).
void maxpool2x2_f32__avx512(const float* x, int oh, int ow, float* q) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const int ph = oh / 2, pw = ow / 2;
  for (int py = 0; py < ph; ++py) {
    const float *x0 = x + 2 * py * ow, *x1 = x0 + ow;
    for (int c = 0; c < 2 * pw; c += 32) {
      const int n = 2 * pw - c < 32 ? 2 * pw - c : 32;  // columns inside this step's windows
      const __mmask16 lo = first(n), hi = first(n - 16);
      const __m512 a0 = _mm512_maskz_loadu_ps(lo, x0 + c), a1 = _mm512_maskz_loadu_ps(hi, x0 + c + 16);
      const __m512 b0 = _mm512_maskz_loadu_ps(lo, x1 + c), b1 = _mm512_maskz_loadu_ps(hi, x1 + c + 16);
      const __m512 top = _mm512_max_ps(_mm512_permutex2var_ps(a0, odd, a1), _mm512_permutex2var_ps(a0, even, a1));
      const __m512 bottom = _mm512_max_ps(_mm512_permutex2var_ps(b0, odd, b1), _mm512_permutex2var_ps(b0, even, b1));
      _mm512_mask_storeu_ps(q + py * pw + c / 2, first(n / 2), _mm512_max_ps(bottom, top));
    }
  }
}

}  // namespace lowbit
