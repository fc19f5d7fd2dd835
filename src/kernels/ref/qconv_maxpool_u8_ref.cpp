// Scalar references of the convolutions without im2col (contracts in kernels/qkernels.h):
// conv -> 2x2 max pool -> requantization (QConvPoolArgs) with the weight packing its SIMD version
// reads, and the implicit GEMM to int32 (QConvI32Args) with its shape check.
#include "kernels/qkernels.h"

namespace lowbit {

namespace {

// bias + sum_{ci, ky, kx} W(i, (ci*kh + ky)*kw + kx) * in(ci, oy + ky - pad, ox + kx - pad), the
// input pad_value outside the image, summed modulo 2^32 (as vpdpbusd). img: one image, c planes.
int32_t conv_at(const uint8_t* img, int c, int h, int w, int kh, int kw, int pad, uint8_t pad_value,
                const int8_t* wi, int32_t bias, int oy, int ox) {
  uint32_t acc = static_cast<uint32_t>(bias);
  for (int ci = 0; ci < c; ++ci)
    for (int ky = 0; ky < kh; ++ky)
      for (int kx = 0; kx < kw; ++kx) {
        const int y = oy + ky - pad, x = ox + kx - pad;
        const bool inside = y >= 0 && y < h && x >= 0 && x < w;
        const int u = inside ? img[(int64_t{ci} * h + y) * w + x] : pad_value;
        acc += static_cast<uint32_t>(u * wi[(ci * kh + ky) * kw + kx]);
      }
  return static_cast<int32_t>(acc);
}

}  // namespace

void qconv_maxpool_u8_ref(const QConvPoolArgs& a) {
  const int oh = qconv_out_size(a.h, a.kh, 1, a.pad), ow = qconv_out_size(a.w, a.kw, 1, a.pad);
  const int ph = oh / 2, pw = ow / 2;
  for (int b = 0; b < a.nb; ++b) {
    const uint8_t* img = a.in + b * a.in_bstride;
    for (int i = 0; i < a.m; ++i) {
      const int8_t* wi = a.weight + i * a.ldw;
      uint8_t* dst = a.out + (int64_t{b} * a.m + i) * ph * pw;
      for (int py = 0; py < ph; ++py)
        for (int px = 0; px < pw; ++px) {
          int32_t best = INT32_MIN;
          for (int oy = 2 * py; oy < 2 * py + 2; ++oy)
            for (int ox = 2 * px; ox < 2 * px + 2; ++ox) {
              const int32_t v = conv_at(img, a.c, a.h, a.w, a.kh, a.kw, a.pad, a.pad_value, wi, a.bias[i], oy, ox);
              if (v > best) best = v;
            }
          dst[py * pw + px] = requantize_ref(best, *a.rq, a.variant, i);
        }
    }
  }
}

int64_t qpack_weights_conv_s8(const int8_t* w, int m, int c, int kh, int kw, int64_t ldw, int8_t* out) {
  const int g4 = (kw + 3) / 4, mb = (m + kConvPoolBlock - 1) / kConvPoolBlock * kConvPoolBlock;
  const int64_t bytes = int64_t{c} * kh * g4 * mb * 4;
  if (!out) return bytes;
  for (int ci = 0; ci < c; ++ci)
    for (int ky = 0; ky < kh; ++ky)
      for (int g = 0; g < g4; ++g)
        for (int i = 0; i < mb; ++i)
          for (int t = 0; t < 4; ++t) {
            const int kx = 4 * g + t;
            const int blk = i / kConvPoolBlock, ib = i % kConvPoolBlock;
            const int64_t at = (((int64_t{blk} * c + ci) * kh + ky) * g4 + g) * kConvPoolBlock * 4 + ib * 4 + t;
            out[at] = i < m && kx < kw ? w[i * ldw + (ci * kh + ky) * kw + kx] : int8_t{0};
          }
  return bytes;
}

void qconv_i32_ref(const QConvI32Args& a) {
  const int oh = a.h - a.kh + 1, ow = a.w - a.kw + 1;
  for (int b = 0; b < a.nb; ++b) {
    const uint8_t* img = a.in + b * a.in_bstride;
    for (int i = 0; i < a.m; ++i) {
      const int8_t* wi = a.weight + i * a.ldw;
      int32_t* dst = a.out + (int64_t{b} * a.m + i) * oh * ow;
      for (int oy = 0; oy < oh; ++oy)
        for (int ox = 0; ox < ow; ++ox)
          dst[oy * ow + ox] = conv_at(img, a.c, a.h, a.w, a.kh, a.kw, 0, 0, wi, a.bias[i], oy, ox);
    }
  }
}

bool qconv_i32_fits(int c, int h, int w, int kh, int kw) {
  const int oh = h - kh + 1, ow = w - kw + 1, pixels = oh * ow;
  if (oh < 1 || ow < 1 || c * kh * kw > 1024 || pixels > 1024) return false;
  for (int n0 = 0; n0 < pixels; n0 += 16) {  // the window of pixels n0..n0+15 from row n0 / ow
    const int n1 = n0 + 15 < pixels ? n0 + 15 : pixels - 1;
    for (int n = n0; n <= n1; ++n)
      if ((n / ow - n0 / ow) * w + n % ow > 63) return false;
  }
  return true;
}

}  // namespace lowbit
