// Lane-layout convolutions and layout changes with AVX-512F (contracts: ConvLanesArgs in
// kernels/dispatch.h). One zmm holds one pixel of 16 images, so every tap is a broadcast weight
// times a vector: forward and dX keep an output row (a strip of <= 12 columns) in registers, dW
// a 4- or 3-channel x 5-tap block.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 bug 105593, before the header
#include <immintrin.h>

#include <algorithm>

#include "kernels/sgemm.h"

namespace lowbit {

namespace {

constexpr int K = 5;  // conv_lanes_fits

// Rows wider than 12 outputs go in strips of at most 12 columns, [x0, x0 + OW) of ow.

// Forward, two output channels per pass: one output row strip of both in 2 * OW <= 24
// accumulators, each input vector loaded once per tap and used by both channels.
template <int OW>
void fwd(const ConvLanesArgs& a, int x0) {
  const int oh = a.h - K + 1, ow = a.w - K + 1;
  const int64_t wsize = int64_t{a.c} * K * K;
  for (int o = 0; o < a.oc; o += 2) {
    const bool two = o + 1 < a.oc;
    const float* w0 = a.wt + o * wsize;
    const float* w1 = two ? w0 + wsize : w0;
    for (int oy = 0; oy < oh; ++oy) {
      __m512 acc0[OW], acc1[OW];
      for (int j = 0; j < OW; ++j) acc0[j] = acc1[j] = _mm512_setzero_ps();
      for (int c = 0; c < a.c; ++c)
        for (int ky = 0; ky < K; ++ky) {
          const float* xr = a.x + ((int64_t{c} * a.h + oy + ky) * a.w + x0) * kLanes;
          const float *wr0 = w0 + (c * K + ky) * K, *wr1 = w1 + (c * K + ky) * K;
          for (int kx = 0; kx < K; ++kx) {
            const __m512 b0 = _mm512_set1_ps(wr0[kx]), b1 = _mm512_set1_ps(wr1[kx]);
#pragma GCC unroll 12
            for (int j = 0; j < OW; ++j) {
              const __m512 v = _mm512_loadu_ps(xr + (j + kx) * kLanes);
              acc0[j] = _mm512_fmadd_ps(b0, v, acc0[j]);
              acc1[j] = _mm512_fmadd_ps(b1, v, acc1[j]);
            }
          }
        }
      float* y0 = a.y + ((int64_t{o} * oh + oy) * ow + x0) * kLanes;
      for (int j = 0; j < OW; ++j) _mm512_storeu_ps(y0 + j * kLanes, acc0[j]);
      if (two)
        for (int j = 0; j < OW; ++j) _mm512_storeu_ps(y0 + (int64_t{oh} * ow + j) * kLanes, acc1[j]);
    }
  }
}

// dX, one input row strip of one channel: W = OW + 4 <= 16 accumulators plus the OW vectors of
// one dY row strip, reused by all 5 taps of a kernel row. A strip after the first adds to the 4
// input columns it shares with the one before.
template <int OW>
void dx(const ConvLanesArgs& a, int x0) {
  constexpr int W = OW + K - 1;
  const int oh = a.h - K + 1, ow = a.w - K + 1;
  for (int c = 0; c < a.c; ++c)
    for (int iy = 0; iy < a.h; ++iy) {
      float* xr = a.x + ((int64_t{c} * a.h + iy) * a.w + x0) * kLanes;
      __m512 acc[W];
      for (int j = 0; j < W; ++j) acc[j] = x0 > 0 && j < K - 1 ? _mm512_loadu_ps(xr + j * kLanes) : _mm512_setzero_ps();
      for (int o = 0; o < a.oc; ++o) {
        const float* wr = a.wt + (int64_t{o} * a.c + c) * K * K;
        for (int ky = std::max(0, iy - oh + 1); ky <= std::min(K - 1, iy); ++ky) {
          const float* dr = a.y + ((int64_t{o} * oh + iy - ky) * ow + x0) * kLanes;
          __m512 d[OW];
          for (int j = 0; j < OW; ++j) d[j] = _mm512_loadu_ps(dr + j * kLanes);
          for (int kx = 0; kx < K; ++kx) {
            const __m512 b = _mm512_set1_ps(wr[ky * K + kx]);
#pragma GCC unroll 12
            for (int j = 0; j < OW; ++j) acc[j + kx] = _mm512_fmadd_ps(b, d[j], acc[j + kx]);
          }
        }
      }
      for (int j = 0; j < W; ++j) _mm512_storeu_ps(xr + j * kLanes, acc[j]);
    }
}

using Fn = void (*)(const ConvLanesArgs&, int);
template <template <int> class F>
Fn by_ow(int ow) {
  switch (ow) {
    case 1: return F<1>::run;
    case 2: return F<2>::run;
    case 3: return F<3>::run;
    case 4: return F<4>::run;
    case 5: return F<5>::run;
    case 6: return F<6>::run;
    case 7: return F<7>::run;
    case 8: return F<8>::run;
    case 9: return F<9>::run;
    case 10: return F<10>::run;
    case 11: return F<11>::run;
    default: return F<12>::run;
  }
}
template <int OW>
struct Fwd {
  static void run(const ConvLanesArgs& a, int x0) { fwd<OW>(a, x0); }
};
template <int OW>
struct Dx {
  static void run(const ConvLanesArgs& a, int x0) { dx<OW>(a, x0); }
};

// The row in ceil(ow / 12) strips of near-equal width (LeNet's conv1: 10 + 9 + 9), in order.
template <template <int> class F>
void by_strips(const ConvLanesArgs& a) {
  const int ow = a.w - K + 1, n = (ow + 11) / 12;
  for (int i = 0, x0 = 0; i < n; ++i) {
    const int width = ow / n + (i < ow % n);
    by_ow<F>(width)(a, x0);
    x0 += width;
  }
}

// In-register transpose of a 16 x 16 block: r[i] lane j -> r[j] lane i. Pairs of rows interleave
// floats, then pairs of those interleave 64-bit pairs (lane group g of u[4i + m] holds column
// 4g + m of rows 4i..4i+3), then 128-bit groups gather across the four row quartets.
inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    const __m512d t0 = _mm512_castps_pd(t[i]), t1 = _mm512_castps_pd(t[i + 1]);
    const __m512d t2 = _mm512_castps_pd(t[i + 2]), t3 = _mm512_castps_pd(t[i + 3]);
    u[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    u[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    u[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    u[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
  for (int m = 0; m < 4; ++m) {
    const __m512 ab02 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x88), cd02 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x88);
    const __m512 ab13 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xDD), cd13 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xDD);
    r[m] = _mm512_shuffle_f32x4(ab02, cd02, 0x88);
    r[4 + m] = _mm512_shuffle_f32x4(ab13, cd13, 0x88);
    r[8 + m] = _mm512_shuffle_f32x4(ab02, cd02, 0xDD);
    r[12 + m] = _mm512_shuffle_f32x4(ab13, cd13, 0xDD);
  }
}

inline __mmask16 first(int64_t m) { return static_cast<__mmask16>(m >= 16 ? 0xFFFF : (1u << m) - 1); }

}  // namespace

void conv_lanes_fwd__avx512(const ConvLanesArgs& a) { by_strips<Fwd>(a); }
void conv_lanes_dx__avx512(const ConvLanesArgs& a) { by_strips<Dx>(a); }

namespace {

// dW: OB output channels x the 5 taps of one (c, ky) in 5 * OB accumulators, summed over every
// output pixel, then across the lanes once.
template <int OB>
void dw_blocks(const ConvLanesArgs& a) {
  const int oh = a.h - K + 1, ow = a.w - K + 1;
  const int64_t plane = int64_t{oh} * ow * kLanes;
  for (int o = 0; o < a.oc; o += OB) {
    const int no = std::min(OB, a.oc - o);
    const float* d[OB];
    for (int i = 0; i < OB; ++i) d[i] = a.y + (o + std::min(i, no - 1)) * plane;  // spare rows repeat the last
    for (int c = 0; c < a.c; ++c)
      for (int ky = 0; ky < K; ++ky) {
        __m512 acc[OB][K];
        for (auto& row : acc)
          for (__m512& v : row) v = _mm512_setzero_ps();
        for (int oy = 0; oy < oh; ++oy) {
          const float* xr = a.x + (int64_t{c} * a.h + oy + ky) * a.w * kLanes;
          const int64_t drow = int64_t{oy} * ow * kLanes;
          for (int ox = 0; ox < ow; ++ox) {
            __m512 xv[K];
            for (int kx = 0; kx < K; ++kx) xv[kx] = _mm512_loadu_ps(xr + (ox + kx) * kLanes);
            for (int i = 0; i < OB; ++i) {
              const __m512 dv = _mm512_loadu_ps(d[i] + drow + ox * kLanes);
              for (int kx = 0; kx < K; ++kx) acc[i][kx] = _mm512_fmadd_ps(dv, xv[kx], acc[i][kx]);
            }
          }
        }
        for (int i = 0; i < no; ++i)
          for (int kx = 0; kx < K; ++kx) a.dw[((o + i) * a.c + c) * K * K + ky * K + kx] += _mm512_reduce_add_ps(acc[i][kx]);
      }
  }
}

}  // namespace

// Blocks of 4 channels, or of 3 where that divides OC and 4 does not (LeNet's conv1: 6), so no
// spare channel is computed.
void conv_lanes_dw__avx512(const ConvLanesArgs& a) {
  if (a.oc % 4 != 0 && a.oc % 3 == 0)
    dw_blocks<3>(a);
  else
    dw_blocks<4>(a);
}

void to_lanes_f32__avx512(const float* src, int64_t stride, int n, int64_t count, float* dst) {
  for (int64_t j0 = 0; j0 < count; j0 += 16) {
    const int64_t m = std::min<int64_t>(16, count - j0);
    __m512 r[16];
    for (int i = 0; i < 16; ++i) r[i] = i < n ? _mm512_maskz_loadu_ps(first(m), src + i * stride + j0) : _mm512_setzero_ps();
    transpose16(r);
    for (int j = 0; j < m; ++j) _mm512_storeu_ps(dst + (j0 + j) * kLanes, r[j]);
  }
}

void from_lanes_f32__avx512(const float* src, int64_t count, int n, float* dst, int64_t stride) {
  for (int64_t j0 = 0; j0 < count; j0 += 16) {
    const int64_t m = std::min<int64_t>(16, count - j0);
    __m512 r[16];
    for (int j = 0; j < 16; ++j) r[j] = j < m ? _mm512_loadu_ps(src + (j0 + j) * kLanes) : _mm512_setzero_ps();
    transpose16(r);
    for (int i = 0; i < n; ++i) _mm512_mask_storeu_ps(dst + i * stride + j0, first(m), r[i]);
  }
}

// One window of 16 lanes at a time: the reference's strict compares in its order, ReLU as
// vmaxps(v, 0) (0 for NaN and -0, as v > 0 ? v : 0).
void relu_maxpool_lanes_win_f32__avx512(const float* y, int oc, int oh, int ow, const float* bias, int n, float* q,
                                        uint8_t* win) {
  const int ph = oh / 2, pw = ow / 2;
  const __m512 zero = _mm512_setzero_ps();
  const __mmask16 lanes = first(n);
  for (int o = 0; o < oc; ++o) {
    const __m512 b = _mm512_set1_ps(bias ? bias[o] : 0.0f);
    for (int py = 0; py < ph; ++py)
      for (int px = 0; px < pw; ++px) {
        const float* y0 = y + ((int64_t{o} * oh + 2 * py) * ow + 2 * px) * kLanes;
        auto relu = [&](const float* p) { return _mm512_max_ps(_mm512_add_ps(_mm512_loadu_ps(p), b), zero); };
        __m512 best = relu(y0);
        __m512i idx = _mm512_setzero_si512();
        for (int j = 1; j < 4; ++j) {
          const __m512 r = relu(y0 + ((j / 2) * ow + j % 2) * kLanes);
          const __mmask16 gt = _mm512_cmp_ps_mask(r, best, _CMP_GT_OQ);
          best = _mm512_mask_mov_ps(best, gt, r);
          idx = _mm512_mask_mov_epi32(idx, gt, _mm512_set1_epi32(j));
        }
        idx = _mm512_mask_mov_epi32(idx, _mm512_cmp_ps_mask(best, zero, _CMP_LE_OQ), _mm512_set1_epi32(kNoWin));
        const int64_t p = (int64_t{o} * ph + py) * pw + px;
        _mm512_storeu_ps(q + p * kLanes, best);
        _mm_mask_storeu_epi8(win + p * n, lanes, _mm512_cvtepi32_epi8(idx));
      }
  }
}

// Every position of dy written once: each window's four from its codes (lanes >= n read as kNoWin),
// a last odd row or column zero.
void relu_maxpool_backward_lanes_win_f32__avx512(const uint8_t* win, const float* dq, int oc, int oh, int ow, int n,
                                                 float* dy) {
  const int ph = oh / 2, pw = ow / 2;
  const __m512 zero = _mm512_setzero_ps();
  const __mmask16 lanes = first(n);
  for (int o = 0; o < oc; ++o) {
    float* plane = dy + int64_t{o} * oh * ow * kLanes;
    for (int py = 0; py < ph; ++py) {
      for (int px = 0; px < pw; ++px) {
        const int64_t p = (int64_t{o} * ph + py) * pw + px;
        const __m512i codes = _mm512_mask_blend_epi32(
            lanes, _mm512_set1_epi32(kNoWin), _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(lanes, win + p * n)));
        const __m512 g = _mm512_add_ps(zero, _mm512_loadu_ps(dq + p * kLanes));  // 0 + dq, as the reference
        for (int j = 0; j < 4; ++j)
          _mm512_storeu_ps(plane + ((2 * py + j / 2) * ow + 2 * px + j % 2) * kLanes,
                          _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(codes, _mm512_set1_epi32(j)), g));
      }
      if (ow % 2)
        for (int r = 0; r < 2; ++r) _mm512_storeu_ps(plane + ((2 * py + r) * ow + ow - 1) * kLanes, zero);
    }
    if (oh % 2)
      for (int x = 0; x < ow; ++x) _mm512_storeu_ps(plane + (int64_t{oh - 1} * ow + x) * kLanes, zero);
  }
}

}  // namespace lowbit
