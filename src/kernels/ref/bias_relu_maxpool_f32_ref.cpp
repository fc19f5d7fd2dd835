// Scalar references of the FP32 conv epilogue fused with ReLU and 2x2 max pooling and of its
// backward (contracts in kernels/dispatch.h, BiasReluMaxpoolFn and ReluMaxpoolBackwardFn): the
// same expressions as Conv2d + Activation + Pool2d.
#include <algorithm>

#include "kernels/sgemm.h"

namespace lowbit {

void bias_relu_maxpool_f32_ref(const float* c, int64_t ldc, int oh, int ow, float bias, float* y, float* r,
                               float* q, bool /*spill: never needed*/) {
  const int ph = oh / 2, pw = ow / 2;
  for (int oy = 0; oy < oh; ++oy)
    for (int ox = 0; ox < ow; ++ox) {
      const float v = c[oy * ldc + ox] + bias;
      y[oy * ow + ox] = v;
      r[oy * ow + ox] = v > 0.0f ? v : 0.0f;
    }
  for (int py = 0; py < ph; ++py)
    for (int px = 0; px < pw; ++px) {
      const float* r0 = r + (2 * py) * ow + 2 * px;
      const float* r1 = r0 + ow;
      q[py * pw + px] = std::max(std::max(r0[0], r0[1]), std::max(r1[0], r1[1]));
    }
}

void maxpool2x2_f32_ref(const float* x, int oh, int ow, float* q) {
  const int ph = oh / 2, pw = ow / 2;
  for (int py = 0; py < ph; ++py) {
    const float *r0 = x + 2 * py * ow, *r1 = r0 + ow;
    for (int px = 0; px < pw; ++px)
      q[py * pw + px] = std::max(std::max(r0[2 * px], r0[2 * px + 1]), std::max(r1[2 * px], r1[2 * px + 1]));
  }
}

void relu_maxpool_backward_f32_ref(const float* y, const float* r, const float* dq, int oh, int ow, float* dy) {
  std::fill(dy, dy + int64_t{oh} * ow, 0.0f);
  const int ph = oh / 2, pw = ow / 2;
  for (int py = 0; py < ph; ++py)
    for (int px = 0; px < pw; ++px) {
      const int base = 2 * py * ow + 2 * px;
      int best = base;
      for (int p : {base + 1, base + ow, base + ow + 1})
        if (r[p] > r[best]) best = p;
      if (!y || y[best] > 0.0f) dy[best] = 0.0f + dq[py * pw + px];
    }
}

void bias_relu_maxpool_win_f32_ref(const float* c, int64_t ldc, int oh, int ow, float bias, float* q, uint8_t* win) {
  const int ph = oh / 2, pw = ow / 2;
  for (int py = 0; py < ph; ++py)
    for (int px = 0; px < pw; ++px) {
      const float* c0 = c + (2 * py) * ldc + 2 * px;
      float r[4];
      for (int j = 0; j < 4; ++j) {
        const float v = c0[(j / 2) * ldc + j % 2] + bias;
        r[j] = v > 0.0f ? v : 0.0f;
      }
      int best = 0;
      for (int j = 1; j < 4; ++j)
        if (r[j] > r[best]) best = j;
      q[py * pw + px] = r[best];
      win[py * pw + px] = r[best] > 0.0f ? static_cast<uint8_t>(best) : kNoWin;
    }
}

void relu_maxpool_backward_win_f32_ref(const uint8_t* win, const float* dq, int oh, int ow, float* dy) {
  std::fill(dy, dy + int64_t{oh} * ow, 0.0f);
  const int ph = oh / 2, pw = ow / 2;
  for (int py = 0; py < ph; ++py)
    for (int px = 0; px < pw; ++px) {
      const int w = win[py * pw + px];
      if (w != kNoWin) dy[(2 * py + w / 2) * ow + 2 * px + w % 2] = 0.0f + dq[py * pw + px];
    }
}

}  // namespace lowbit
