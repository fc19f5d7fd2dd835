// col2im with AVX-512 for stride 1, rows of up to 64 floats and kernels up to 16 (Col2imArgs in
// kernels/dispatch.h), bit-identical to col2im_f32_ref; other shapes go to the reference.
// Per image, channel and input row iy, the row is held in up to four zmm while every tap (ky, kx)
// that reaches it (output row oy = iy + pad - ky) adds its col row, loaded shifted by kx - pad with
// a mask that keeps the columns inside the image (masked lanes do not fault): one load and one
// store per input row instead of a read-modify-write per tap (masked stores do not forward to
// later loads, which stalled a ky-outer order).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 bug 105593, before the header
#include <immintrin.h>

#include "kernels/sgemm.h"

namespace lowbit {
namespace {

inline __mmask16 lanes(int from, int to) {  // lanes l with from <= l < to
  const int lo = from < 0 ? 0 : from, hi = to > 16 ? 16 : to;
  return hi <= lo ? 0 : static_cast<__mmask16>(((1u << hi) - 1) & ~((1u << lo) - 1));
}

constexpr int kMaxK = 16;

// Rows of at most 16 * NV floats: NV constant, so the row stays in registers.
template <int NV>
void col2im_rows(const Col2imArgs& a) {
  const int P = a.oh * a.ow;
  // Per tap column kx: the lanes of each vector that take a col value (0 <= ox < ow, inside the row).
  __mmask16 take[kMaxK][NV];
  for (int kx = 0; kx < a.k; ++kx)
    for (int v = 0; v < NV; ++v) {
      const int shift = kx - a.pad, x0 = 16 * v;
      take[kx][v] = lanes(shift - x0, shift + a.ow - x0) & lanes(0, a.w - x0);
    }
  for (int n = 0; n < a.t; ++n)
    for (int ci = 0; ci < a.c; ++ci) {
      float* plane = a.dx + (int64_t{n} * a.c + ci) * a.h * a.w;
      const float* taps = a.col + int64_t{ci} * a.k * a.k * a.ld + int64_t{n} * P;  // tap (0, 0)
      for (int iy = 0; iy < a.h; ++iy) {
        float* drow = plane + iy * a.w;
        __m512 acc[NV];
        #pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[v] = _mm512_maskz_loadu_ps(lanes(0, a.w - 16 * v), drow + 16 * v);
        for (int ky = 0; ky < a.k; ++ky) {
          const int oy = iy + a.pad - ky;
          if (oy < 0 || oy >= a.oh) continue;
          for (int kx = 0; kx < a.k; ++kx) {
            // Input column ix takes col column ox = ix + pad - kx, for 0 <= ox < ow.
            const int shift = kx - a.pad;
            const float* src = taps + (ky * a.k + kx) * a.ld + oy * a.ow - shift;  // src[ix] = col(ox = ix - shift)
            #pragma GCC unroll 4
            for (int v = 0; v < NV; ++v)
              acc[v] = _mm512_mask_add_ps(acc[v], take[kx][v], acc[v], _mm512_maskz_loadu_ps(take[kx][v], src + 16 * v));
          }
        }
        #pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(drow + 16 * v, lanes(0, a.w - 16 * v), acc[v]);
      }
    }
}

}  // namespace

void col2im_f32__avx512(const Col2imArgs& a) {
  if (a.stride != 1 || a.w > 64 || a.k > kMaxK) {
    col2im_f32_ref(a);
    return;
  }
  switch ((a.w + 15) / 16) {
    case 1: col2im_rows<1>(a); break;
    case 2: col2im_rows<2>(a); break;
    case 3: col2im_rows<3>(a); break;
    default: col2im_rows<4>(a); break;
  }
}

}  // namespace lowbit
