// Scalar reference of 2x2 stride-2 max and average pooling on u8 planes (contracts in
// kernels/qkernels.h), and max pooling of int32 accumulators followed by requantization.
#include "kernels/qkernels.h"

namespace lowbit {

void qmaxpool2x2_u8_ref(const uint8_t* in, int64_t planes, int h, int w, uint8_t* out) {
  const int oh = h / 2, ow = w / 2;
  for (int64_t p = 0; p < planes; ++p) {
    const uint8_t* src = in + p * h * w;
    uint8_t* dst = out + p * oh * ow;
    for (int y = 0; y < oh; ++y) {
      for (int x = 0; x < ow; ++x) {
        const uint8_t* s = src + (2 * y) * w + 2 * x;
        uint8_t v = s[0];
        if (s[1] > v) v = s[1];
        if (s[w] > v) v = s[w];
        if (s[w + 1] > v) v = s[w + 1];
        dst[y * ow + x] = v;
      }
    }
  }
}

void qavgpool2x2_u8_ref(const uint8_t* in, int64_t planes, int h, int w, uint8_t* out) {
  const int oh = h / 2, ow = w / 2;
  for (int64_t p = 0; p < planes; ++p) {
    const uint8_t* src = in + p * h * w;
    uint8_t* dst = out + p * oh * ow;
    for (int y = 0; y < oh; ++y) {
      for (int x = 0; x < ow; ++x) {
        const uint8_t* s = src + (2 * y) * w + 2 * x;
        const int sum_q = s[0] + s[1] + s[w] + s[w + 1] - 4 * 128;  // sum of q = u - 128
        // sum_q / 4 rounded to nearest, ties away from zero.
        const int avg_q = sum_q >= 0 ? (sum_q + 2) / 4 : -((-sum_q + 2) / 4);
        dst[y * ow + x] = static_cast<uint8_t>(avg_q + 128);
      }
    }
  }
}

void qmaxpool2x2_requant_i32_ref(const QPoolRequantArgs& a) {
  const int oh = a.h / 2, ow = a.w / 2;
  for (int64_t pl = 0; pl < int64_t{a.nb} * a.c; ++pl) {
    const int32_t* src = a.in + pl * a.h * a.w;
    uint8_t* dst = a.out + pl * oh * ow;
    const int ch = static_cast<int>(pl % a.c);
    for (int y = 0; y < oh; ++y)
      for (int x = 0; x < ow; ++x) {
        const int32_t* s = src + (2 * y) * a.w + 2 * x;
        int32_t v = s[0];
        if (s[1] > v) v = s[1];
        if (s[a.w] > v) v = s[a.w];
        if (s[a.w + 1] > v) v = s[a.w + 1];
        dst[y * ow + x] = requantize_ref(v, *a.rq, a.variant, ch);
      }
  }
}

}  // namespace lowbit
