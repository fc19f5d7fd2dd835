// im2col of u8 images into the packed GEMM layout [K4/4][N][4], AVX2 where it pays: byte-equal
// to qim2col_u8_ref (contract in kernels/qkernels.h). Also used by the AVX-512 table (the work is
// shuffles and stores, not arithmetic). Not here: the GEMM, threading.
//
// For one k-block (4 consecutive k = 4 kernel taps, possibly of different kernel rows or
// channels) and one output row y, each tap reads one input row (or a constant: the pad value for
// rows outside the image, 0 for k >= K). With stride 1 the tap's row is read contiguously, so 16
// output columns are four 16-byte loads interleaved byte-wise (punpck*bw, then punpck*wd) into
// 64 packed bytes. Three paths: a kernel covering the whole image (LeNet's conv3) is a plain
// pack; stride 1 without padding (conv1, conv2) has a lean loop; otherwise columns whose taps
// fall into the left/right padding, and strides > 1, take the scalar path. Output rows narrower
// than 16 use full steps that overrun into positions of the packed matrix written later (never
// outside it).
#include <immintrin.h>

#include "kernels/im2col_stride1.h"
#include "kernels/qkernels.h"

namespace lowbit {
namespace {

// 16 output columns of one k-block: byte x of each tap's 16-byte run -> 4 packed bytes at d + 4x.
// Taps t >= nreal are the zero rows k >= K.
inline void interleave16(const uint8_t* const* p, int x, int nreal, uint8_t* d) {
  const __m128i zero = _mm_setzero_si128();
  const __m128i v0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[0] + x));
  const __m128i v1 = nreal > 1 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[1] + x)) : zero;
  const __m128i v2 = nreal > 2 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[2] + x)) : zero;
  const __m128i v3 = nreal > 3 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[3] + x)) : zero;
  const __m128i lo01 = _mm_unpacklo_epi8(v0, v1), hi01 = _mm_unpackhi_epi8(v0, v1);
  const __m128i lo23 = _mm_unpacklo_epi8(v2, v3), hi23 = _mm_unpackhi_epi8(v2, v3);
  __m128i* o = reinterpret_cast<__m128i*>(d + 4 * x);
  _mm_storeu_si128(o + 0, _mm_unpacklo_epi16(lo01, lo23));  // columns x..x+3
  _mm_storeu_si128(o + 1, _mm_unpackhi_epi16(lo01, lo23));  // x+4..x+7
  _mm_storeu_si128(o + 2, _mm_unpacklo_epi16(hi01, hi23));  // x+8..x+11
  _mm_storeu_si128(o + 3, _mm_unpackhi_epi16(hi01, hi23));  // x+12..x+15
}

}  // namespace

void qim2col_u8__avx2(const QIm2colArgs& a) {
  if (a.pad == 0 && a.kh == a.h && a.kw == a.w && a.in_cstride == int64_t{a.h} * a.w) {
    // The kernel covers the image (conv3): X(k, b) = in[b * in_bstride + k], a plain pack.
    qpack_u8__avx2(a.in, 1, a.in_bstride, a.c * a.kh * a.kw, a.nb, a.out);
    return;
  }
  if (a.stride == 1 && a.pad == 0) {
    im2col_stride1_nopad(a, interleave16);
    return;
  }
  const int oh = qconv_out_size(a.h, a.kh, a.stride, a.pad);
  const int ow = qconv_out_size(a.w, a.kw, a.stride, a.pad);
  const int k_real = a.c * a.kh * a.kw;
  const int nkb = qk4(k_real) / 4;
  const int64_t n_all = int64_t{a.nb} * oh * ow;
  alignas(16) uint8_t const_row[4][16];  // source of taps that read a constant
  // Bytes from `in` to the end of its last plane, and the size of the packed matrix.
  const int64_t in_size = (a.nb - 1) * a.in_bstride + (a.c - 1) * a.in_cstride + int64_t{a.h} * a.w;
  const int64_t out_size = nkb * n_all * 4;

  Tap tap;  // of k = 4 * kb + t
  for (int kb = 0; kb < nkb; ++kb) {
    int ci[4], ti[4], tj[4];
    bool real[4];
    for (int t = 0; t < 4; ++t) {
      real[t] = 4 * kb + t < k_real;
      ci[t] = real[t] ? tap.ci : 0;
      ti[t] = real[t] ? tap.i : 0;
      tj[t] = real[t] ? tap.j : 0;
      if (real[t]) tap.next(a.kh, a.kw);
    }
    // Output columns x in [x_lo, x_hi) read every tap inside its row (x - pad + tj in [0, w)).
    int x_lo = 0, x_hi = ow;
    if (a.stride == 1) {
      for (int t = 0; t < 4; ++t) {
        if (!real[t]) continue;
        if (a.pad - tj[t] > x_lo) x_lo = a.pad - tj[t];
        if (a.w + a.pad - tj[t] < x_hi) x_hi = a.w + a.pad - tj[t];
      }
      if (x_hi < x_lo) x_hi = x_lo;
    } else {
      x_lo = x_hi = ow;  // all scalar
    }
    uint8_t* out_kb = a.out + kb * n_all * 4;
    uint8_t cval[4];
    for (int t = 0; t < 4; ++t) {
      cval[t] = real[t] ? a.pad_value : uint8_t{0};
      for (int q = 0; q < 16; ++q) const_row[t][q] = cval[t];
    }

    for (int b = 0; b < a.nb; ++b) {
      for (int y = 0; y < oh; ++y) {
        uint8_t* o = out_kb + (int64_t{b} * oh + y) * ow * 4;
        // Per tap: its input row and the column of output x = 0 (x*stride + off), or a constant
        // row read with step 0.
        const uint8_t* row[4];
        int off[4], step[4];
        bool row_ok[4];
        for (int t = 0; t < 4; ++t) {
          const int r = y * a.stride - a.pad + ti[t];
          row_ok[t] = real[t] && r >= 0 && r < a.h;
          row[t] = row_ok[t] ? a.in + b * a.in_bstride + ci[t] * a.in_cstride + int64_t{r} * a.w
                             : const_row[t];
          off[t] = row_ok[t] ? tj[t] - a.pad : 0;
          step[t] = row_ok[t] ? 1 : 0;
        }
        auto scalar = [&](int x) {
          for (int t = 0; t < 4; ++t) {
            const int s = x * a.stride + off[t];
            o[int64_t{x} * 4 + t] = row_ok[t] && s >= 0 && s < a.w ? row[t][s] : cval[t];
          }
        };
        auto load = [&](int t, int x) {
          return _mm_loadu_si128(reinterpret_cast<const __m128i*>(row[t] + (x + off[t]) * step[t]));
        };
        auto simd16 = [&](int x) {  // columns x..x+15, all inside [x_lo, x_hi)
          const __m128i v0 = load(0, x), v1 = load(1, x), v2 = load(2, x), v3 = load(3, x);
          const __m128i lo01 = _mm_unpacklo_epi8(v0, v1), hi01 = _mm_unpackhi_epi8(v0, v1);
          const __m128i lo23 = _mm_unpacklo_epi8(v2, v3), hi23 = _mm_unpackhi_epi8(v2, v3);
          __m128i* d = reinterpret_cast<__m128i*>(o + int64_t{x} * 4);
          _mm_storeu_si128(d + 0, _mm_unpacklo_epi16(lo01, lo23));  // columns x..x+3
          _mm_storeu_si128(d + 1, _mm_unpackhi_epi16(lo01, lo23));  // x+4..x+7
          _mm_storeu_si128(d + 2, _mm_unpacklo_epi16(hi01, hi23));  // x+8..x+11
          _mm_storeu_si128(d + 3, _mm_unpackhi_epi16(hi01, hi23));  // x+12..x+15
        };
        // A 16-column step past x_hi (rows narrower than 16, LeNet's 10 and 28) is fine when its
        // reads stay inside the input and its writes inside the packed matrix: the columns past
        // x_hi get garbage that later steps (this row's scalar tail, the next row, image or
        // k-block) overwrite.
        auto may_overrun = [&](int x) {
          for (int t = 0; t < 4; ++t)
            if (step[t] && (row[t] - a.in) + x + off[t] + 16 > in_size) return false;
          return (o - a.out) + int64_t{x} * 4 + 64 <= out_size;
        };
        int x = 0;
        for (; x < x_lo; ++x) scalar(x);
        for (; x + 16 <= x_hi; x += 16) simd16(x);
        if (x < x_hi && x_hi - 16 >= x_lo) {  // ragged end: one overlapping step
          simd16(x_hi - 16);
          x = x_hi;
        } else if (x < x_hi && may_overrun(x)) {
          simd16(x);
          x = x_hi;
        }
        for (; x < ow; ++x) scalar(x);
      }
    }
  }
}

}  // namespace lowbit
