// Scalar references of the lane-layout convolutions and layout changes (contracts in
// kernels/dispatch.h, ConvLanesArgs) and of the 5x5 weight gradient (ConvDwArgs): the formulas,
// one lane at a time.
#include <algorithm>

#include "kernels/sgemm.h"

namespace lowbit {

bool conv_lanes_fits(int c, int h, int w, int oc, int k) {
  return c > 0 && oc > 0 && k == 5 && h >= k && w >= k;
}

void conv_lanes_fwd_ref(const ConvLanesArgs& a) {
  const int oh = a.h - a.k + 1, ow = a.w - a.k + 1;
  for (int o = 0; o < a.oc; ++o)
    for (int oy = 0; oy < oh; ++oy)
      for (int ox = 0; ox < ow; ++ox)
        for (int l = 0; l < kLanes; ++l) {
          float s = 0.0f;
          for (int c = 0; c < a.c; ++c)
            for (int ky = 0; ky < a.k; ++ky)
              for (int kx = 0; kx < a.k; ++kx)
                s += a.wt[((o * a.c + c) * a.k + ky) * a.k + kx] *
                     a.x[((int64_t{c} * a.h + oy + ky) * a.w + ox + kx) * kLanes + l];
          a.y[((int64_t{o} * oh + oy) * ow + ox) * kLanes + l] = s;
        }
}

void conv_lanes_dw_ref(const ConvLanesArgs& a) {
  const int oh = a.h - a.k + 1, ow = a.w - a.k + 1;
  for (int o = 0; o < a.oc; ++o)
    for (int c = 0; c < a.c; ++c)
      for (int ky = 0; ky < a.k; ++ky)
        for (int kx = 0; kx < a.k; ++kx) {
          float s = 0.0f;
          for (int oy = 0; oy < oh; ++oy)
            for (int ox = 0; ox < ow; ++ox)
              for (int l = 0; l < kLanes; ++l)
                s += a.y[((int64_t{o} * oh + oy) * ow + ox) * kLanes + l] *
                     a.x[((int64_t{c} * a.h + oy + ky) * a.w + ox + kx) * kLanes + l];
          a.dw[((o * a.c + c) * a.k + ky) * a.k + kx] += s;
        }
}

void conv_lanes_dx_ref(const ConvLanesArgs& a) {
  const int oh = a.h - a.k + 1, ow = a.w - a.k + 1;
  for (int c = 0; c < a.c; ++c)
    for (int iy = 0; iy < a.h; ++iy)
      for (int ix = 0; ix < a.w; ++ix)
        for (int l = 0; l < kLanes; ++l) {
          float s = 0.0f;
          for (int o = 0; o < a.oc; ++o)
            for (int ky = 0; ky < a.k; ++ky)
              for (int kx = 0; kx < a.k; ++kx) {
                const int oy = iy - ky, ox = ix - kx;
                if (oy < 0 || oy >= oh || ox < 0 || ox >= ow) continue;
                s += a.wt[((o * a.c + c) * a.k + ky) * a.k + kx] *
                     a.y[((int64_t{o} * oh + oy) * ow + ox) * kLanes + l];
              }
          a.x[((int64_t{c} * a.h + iy) * a.w + ix) * kLanes + l] = s;
        }
}

void conv5_dw_f32_ref(const ConvDwArgs& a) {
  constexpr int k = 5;
  const int oh = a.h - k + 1, ow = a.w - k + 1;
  for (int o = 0; o < a.oc; ++o)
    for (int c = 0; c < a.c; ++c)
      for (int ky = 0; ky < k; ++ky)
        for (int kx = 0; kx < k; ++kx) {
          float s = 0.0f;
          for (int b = 0; b < a.n; ++b) {
            const float *x = a.x + b * a.x_stride, *dy = a.dy + b * a.dy_stride;
            for (int oy = 0; oy < oh; ++oy)
              for (int ox = 0; ox < ow; ++ox)
                s += dy[(int64_t{o} * oh + oy) * ow + ox] * x[(int64_t{c} * a.h + oy + ky) * a.w + ox + kx];
          }
          a.dw[((o * a.c + c) * k + ky) * k + kx] += s;
        }
}

void to_lanes_f32_ref(const float* src, int64_t stride, int n, int64_t count, float* dst) {
  for (int64_t j = 0; j < count; ++j)
    for (int i = 0; i < kLanes; ++i) dst[j * kLanes + i] = i < n ? src[i * stride + j] : 0.0f;
}

void from_lanes_f32_ref(const float* src, int64_t count, int n, float* dst, int64_t stride) {
  for (int i = 0; i < n; ++i)
    for (int64_t j = 0; j < count; ++j) dst[i * stride + j] = src[j * kLanes + i];
}

void relu_maxpool_lanes_win_f32_ref(const float* y, int oc, int oh, int ow, const float* bias, int n, float* q,
                                    uint8_t* win) {
  const int ph = oh / 2, pw = ow / 2;
  for (int o = 0; o < oc; ++o)
    for (int py = 0; py < ph; ++py)
      for (int px = 0; px < pw; ++px)
        for (int l = 0; l < kLanes; ++l) {
          float r[4];
          for (int j = 0; j < 4; ++j) {
            const float v = y[((int64_t{o} * oh + 2 * py + j / 2) * ow + 2 * px + j % 2) * kLanes + l] + (bias ? bias[o] : 0.0f);
            r[j] = v > 0.0f ? v : 0.0f;
          }
          int best = 0;
          for (int j = 1; j < 4; ++j)
            if (r[j] > r[best]) best = j;
          const int64_t p = (int64_t{o} * ph + py) * pw + px;
          q[p * kLanes + l] = r[best];
          if (l < n) win[p * n + l] = r[best] > 0.0f ? static_cast<uint8_t>(best) : kNoWin;
        }
}

void relu_maxpool_backward_lanes_win_f32_ref(const uint8_t* win, const float* dq, int oc, int oh, int ow, int n,
                                             float* dy) {
  std::fill(dy, dy + int64_t{oc} * oh * ow * kLanes, 0.0f);
  const int ph = oh / 2, pw = ow / 2;
  for (int o = 0; o < oc; ++o)
    for (int py = 0; py < ph; ++py)
      for (int px = 0; px < pw; ++px)
        for (int l = 0; l < n; ++l) {
          const int64_t p = (int64_t{o} * ph + py) * pw + px;
          const int w = win[p * n + l];
          if (w != kNoWin) dy[((int64_t{o} * oh + 2 * py + w / 2) * ow + 2 * px + w % 2) * kLanes + l] = 0.0f + dq[p * kLanes + l];
        }
}

}  // namespace lowbit
