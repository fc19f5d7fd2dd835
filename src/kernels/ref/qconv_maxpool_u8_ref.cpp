// Scalar reference of the direct convolution -> 2x2 max pool -> requantization (contract in
// kernels/qkernels.h, QConvPoolArgs), and the weight packing its SIMD version reads.
#include "kernels/qkernels.h"

namespace lowbit {

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
              uint32_t acc = static_cast<uint32_t>(a.bias[i]);  // modulo 2^32, as vpdpbusd
              for (int ci = 0; ci < a.c; ++ci)
                for (int ky = 0; ky < a.kh; ++ky)
                  for (int kx = 0; kx < a.kw; ++kx) {
                    const int y = oy + ky - a.pad, x = ox + kx - a.pad;
                    const bool inside = y >= 0 && y < a.h && x >= 0 && x < a.w;
                    const int u = inside ? img[(int64_t{ci} * a.h + y) * a.w + x] : a.pad_value;
                    acc += static_cast<uint32_t>(u * wi[(ci * a.kh + ky) * a.kw + kx]);
                  }
              const int32_t v = static_cast<int32_t>(acc);
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

}  // namespace lowbit
