// The stride-1, unpadded im2col loop (all of LeNet's convolutions) shared by the SIMD im2col
// kernels; each passes its own 16-column step. Contract: QIm2colArgs in kernels/qkernels.h.
// Include only from an ISA folder: the step's instructions come from that folder's flags.
#pragma once

#include <cstdint>

#include "kernels/qkernels.h"

namespace lowbit {

// (channel, kernel row, kernel column) of k = (ci*kh + i)*kw + j, stepped through consecutive k
// without division (an idiv per tap cost more than the copying at batch 1).
struct Tap {
  int ci = 0, i = 0, j = 0;
  void next(int kh, int kw) {
    if (++j < kw) return;
    j = 0;
    if (++i < kh) return;
    i = 0;
    ++ci;
  }
};

// Stride 1 without padding (all of LeNet): tap t of output row y reads input row y + i from
// column j on, so a row costs four pointer bumps and ceil(ow/16) interleave steps.
// step(const uint8_t* const* p, int x, int nreal, uint8_t* d) writes output columns x..x+15 of
// one k-block and output row: byte p[t][x + c] of tap t < nreal (0 for taps t >= nreal, the
// rows k >= K) to d[4 * (x + c) + t].
template <class Step>
inline void im2col_stride1_nopad(const QIm2colArgs& a, Step step) {
  const int oh = a.h - a.kh + 1, ow = a.w - a.kw + 1;
  const int k_real = a.c * a.kh * a.kw;
  const int nkb = qk4(k_real) / 4;
  const int64_t n_all = int64_t{a.nb} * oh * ow;
  const int64_t in_size = (a.nb - 1) * a.in_bstride + (a.c - 1) * a.in_cstride + int64_t{a.h} * a.w;
  const uint8_t* out_end = a.out + nkb * n_all * 4;
  Tap tap;  // of k = 4 * kb + t
  for (int kb = 0; kb < nkb; ++kb) {
    const int nreal = k_real - 4 * kb < 4 ? k_real - 4 * kb : 4;  // real taps come first
    int64_t off[4] = {0, 0, 0, 0};  // tap t of image 0, output row 0, column 0 at in + off[t]
    int64_t max_off = 0;
    for (int t = 0; t < nreal; ++t, tap.next(a.kh, a.kw)) {
      off[t] = tap.ci * a.in_cstride + int64_t{tap.i} * a.w + tap.j;
      if (off[t] > max_off) max_off = off[t];
    }
    uint8_t* o = a.out + kb * n_all * 4;
    for (int b = 0; b < a.nb; ++b) {
      const uint8_t* p[4];
      for (int t = 0; t < 4; ++t) p[t] = a.in + b * a.in_bstride + off[t];
      // Rows whose 16-byte reads stay inside the input, for the narrow-row overrun below.
      const int64_t room = in_size - 16 - max_off - b * a.in_bstride;
      const int y_safe = room < 0 ? -1 : static_cast<int>(room / a.w);
      for (int y = 0; y < oh; ++y, o += int64_t{ow} * 4) {
        if (y > 0)
          for (int t = 0; t < 4; ++t) p[t] += a.w;
        int x = 0;
        for (; x + 16 <= ow; x += 16) step(p, x, nreal, o);
        if (x == ow) continue;
        if (ow >= 16) {  // ragged end: one overlapping step
          step(p, ow - 16, nreal, o);
        } else if (y <= y_safe && o + 64 <= out_end) {
          // Narrow rows: a full step writes garbage past the row end into positions written
          // later (next row, image or k-block), never outside the packed matrix.
          step(p, 0, nreal, o);
        } else {
          for (; x < ow; ++x)
            for (int t = 0; t < 4; ++t) o[4 * x + t] = t < nreal ? p[t][x] : uint8_t{0};
        }
      }
    }
  }
}

}  // namespace lowbit
