// The loops of fake quantization and of its straight-through backward passes (fake_quant.cpp
// explains the rounding). Included by fake_quant.cpp (the generic build) and by
// kernels/avx512/fake_quant__avx512.cpp (the same code compiled for AVX-512: wider vectors, the
// same bits, as neither contracts nor reorders float operations). Internal linkage: each includer
// gets its own copy, compiled with its own flags.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "lowbit/qat.h"

namespace lowbit {
namespace {

constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
constexpr int kLanes = 8;              // independent accumulators: vectorizable reductions
// The min/max beside the forward: one AVX-512 vector of accumulators (min and max are exact, so
// any count gives the same bits).
constexpr int kMinMaxLanes = 16;

inline float round_small(float v) { return (v + kMagic) - kMagic; }
// floor(y) = r - [r > y] with r = round(y); the indicator as min(1, max(0, (r - y) * 2^126)), since
// r - y is 0 or at least an ulp of y (>= 2^-126 for every |y| >= 2^-102, and floor(y) of smaller
// y > 0 is 0 anyway): min/max vectorize.
inline float floor_small(float y) {
  const float r = round_small(y);
  return r - std::min(1.0f, std::max(0.0f, (r - y) * 0x1p126f));
}
inline float clampf(float v, float lo, float hi) { return std::min(std::max(v, lo), hi); }

// The engine's fixed-point requantization rounding of v (qat.h): floor(v + 1/2 +- e), the sign of
// e that of v (copysign: -0 rounds like +0, both give 0).
inline float round_fixedpoint(float v, float e) { return floor_small(v + (0.5f + std::copysign(e, v))); }

float threshold_of(int32_t right) { return right >= 1 ? std::ldexp(1.0f, -(std::min(right, 40) + 1)) : 0.0f; }

// The three roundings: nearest-even of x / s; fixed-point of x * (1/s) with the run's threshold e;
// fixed-point with a threshold per element (FakeQuantArgs::thresholds).
enum Mode { kNearest, kFixed, kFixedEach };

template <int kMode>
struct Rounder {
  float s, inv, e;
  const float* et;
  explicit Rounder(const FakeQuantArgs& a)
      : s(a.scale), inv(1.0f / a.scale), e(threshold_of(a.right)), et(a.thresholds) {}
  float v(float x) const { return kMode == kNearest ? x / s : x * inv; }
  float round(float v, int64_t i) const {
    if (kMode == kNearest) return round_small(v);
    return round_fixedpoint(v, kMode == kFixedEach ? et[i] : e);
  }
};

// L = qmin - z and U = qmax - z as floats.
struct Bounds {
  float lo, hi;
  explicit Bounds(const FakeQuantArgs& a)
      : lo(static_cast<float>(a.qmin - a.zero_point)), hi(static_cast<float>(a.qmax - a.zero_point)) {}
};

int mode_of(const FakeQuantArgs& a) { return a.right < 0 ? kNearest : (a.thresholds ? kFixedEach : kFixed); }

// ---- forward ----

template <int kMode>
void forward(const float* x, int64_t n, const FakeQuantArgs& a, float* out) {
  const Rounder<kMode> rd(a);
  const Bounds b(a);
  for (int64_t i = 0; i < n; ++i) out[i] = rd.s * rd.round(clampf(rd.v(x[i]), b.lo, b.hi), i);
}

// One pass: kMinMaxLanes independent min/max accumulators beside the forward. GCC vectorizes this fused
// loop in the fixed-point modes (every activation after a layer); in nearest-even mode (only the
// network input) it stays scalar, as does a separate min/max loop in every mode.
template <int kMode>
void forward_minmax(const float* x, int64_t n, const FakeQuantArgs& a, float* out, float* xmin, float* xmax) {
  const Rounder<kMode> rd(a);
  const Bounds b(a);
  float mn[kMinMaxLanes], mx[kMinMaxLanes];
  for (int l = 0; l < kMinMaxLanes; ++l) mn[l] = mx[l] = n > 0 ? x[0] : 0.0f;
  const int64_t body = n - n % kMinMaxLanes;
  for (int64_t i = 0; i < body; i += kMinMaxLanes)
    for (int l = 0; l < kMinMaxLanes; ++l) {
      const float xv = x[i + l];
      mn[l] = std::min(mn[l], xv);
      mx[l] = std::max(mx[l], xv);
      out[i + l] = rd.s * rd.round(clampf(rd.v(xv), b.lo, b.hi), i + l);
    }
  for (int64_t i = body; i < n; ++i) {
    mn[0] = std::min(mn[0], x[i]);
    mx[0] = std::max(mx[0], x[i]);
    out[i] = rd.s * rd.round(clampf(rd.v(x[i]), b.lo, b.hi), i);
  }
  float rmn = mn[0], rmx = mx[0];
  for (int l = 1; l < kMinMaxLanes; ++l) {
    rmn = std::min(rmn, mn[l]);
    rmx = std::max(rmx, mx[l]);
  }
  *xmin = rmn;
  *xmax = rmx;
}

// ---- backward ----

// r = R(v) of v clamped to [L - 1, U + 1]: outside [L, U] exactly when the forward clamped.
template <int kMode>
void backward_clipped(const float* x, const float* dy, int64_t n, const FakeQuantArgs& a, float* dx) {
  const Rounder<kMode> rd(a);
  const Bounds b(a);
  // With a fused ReLU, x <= 0 is masked too: x > xmin with xmin = 0, else -inf (always true).
  const float xmin = a.relu ? 0.0f : -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    const float xv = x[i];
    const float r = rd.round(clampf(rd.v(xv), b.lo - 1.0f, b.hi + 1.0f), i);
    const float g = dy[i];
    const bool pass = (r >= b.lo) & (r <= b.hi) & (xv > xmin);  // & not &&: no branches
    dx[i] = pass ? g : 0.0f;
  }
}

// LSQ (Esser et al. 2020, eq. 3): the range test is on v itself, not on its rounding. In chunks
// of kChunk values (in L1), simple loops that each vectorize (one fused loop does not: GCC cannot
// if-convert it): d = R(clamp(v, L, U)) into a stack buffer; d -= v where L < v < U, giving
// d(x_hat)/ds = R(v) - v inside, L at or below, U at or above (R(L) = L, R(U) = U); dx = dy where
// L < v < U; then the sum of dy * d over kLanes independent accumulators.
constexpr int64_t kChunk = 256;

template <int kMode>
double backward_lsq(const float* x, const float* dy, int64_t n, const FakeQuantArgs& a, float* dx) {
  const Rounder<kMode> rd(a);
  const Bounds b(a);
  float acc[kLanes] = {};
  float d[kChunk];
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t m = std::min(kChunk, n - c0);
    const float* xc = x + c0;
    const float* gc = dy + c0;
    for (int64_t i = 0; i < m; ++i) d[i] = rd.round(clampf(rd.v(xc[i]), b.lo, b.hi), c0 + i);
    for (int64_t i = 0; i < m; ++i) {  // at the clamps R(v) is L or U itself: d = R(v) - v * [L < v < U]
      const float v = rd.v(xc[i]);
      const float inside_v = ((v > b.lo) & (v < b.hi)) ? v : 0.0f;
      d[i] -= inside_v;
    }
    for (int64_t i = 0; i < m; ++i) {
      const float v = rd.v(xc[i]);
      const float g = gc[i];
      dx[c0 + i] = ((v > b.lo) & (v < b.hi)) ? g : 0.0f;
    }
    const int64_t body = m - m % kLanes;
    for (int64_t i = 0; i < body; i += kLanes)
      for (int l = 0; l < kLanes; ++l) acc[l] += gc[i + l] * d[i + l];
    for (int64_t i = body; i < m; ++i) acc[0] += gc[i] * d[i];
  }
  double total = 0;
  for (int l = 0; l < kLanes; ++l) total += acc[l];
  return total;
}

// Entry points, one per public function (fake_quant_forward and the rest).
inline void fq_forward(const float* x, int64_t n, const FakeQuantArgs& a, float* out) {
  switch (mode_of(a)) {
    case kNearest: return forward<kNearest>(x, n, a, out);
    case kFixed: return forward<kFixed>(x, n, a, out);
    default: return forward<kFixedEach>(x, n, a, out);
  }
}

inline void fq_forward_minmax(const float* x, int64_t n, const FakeQuantArgs& a, float* out, float* xmin, float* xmax) {
  switch (mode_of(a)) {
    case kNearest: return forward_minmax<kNearest>(x, n, a, out, xmin, xmax);
    case kFixed: return forward_minmax<kFixed>(x, n, a, out, xmin, xmax);
    default: return forward_minmax<kFixedEach>(x, n, a, out, xmin, xmax);
  }
}

inline void fq_backward_clipped(const float* x, const float* dy, int64_t n, const FakeQuantArgs& a, float* dx) {
  switch (mode_of(a)) {
    case kNearest: return backward_clipped<kNearest>(x, dy, n, a, dx);
    case kFixed: return backward_clipped<kFixed>(x, dy, n, a, dx);
    default: return backward_clipped<kFixedEach>(x, dy, n, a, dx);
  }
}

inline double fq_backward_lsq(const float* x, const float* dy, int64_t n, const FakeQuantArgs& a, float* dx) {
  switch (mode_of(a)) {
    case kNearest: return backward_lsq<kNearest>(x, dy, n, a, dx);
    case kFixed: return backward_lsq<kFixed>(x, dy, n, a, dx);
    default: return backward_lsq<kFixedEach>(x, dy, n, a, dx);
  }
}

}  // namespace
}  // namespace lowbit
