// Fake quantization over float arrays and its straight-through backward passes (identity,
// clipped, LSQ), forward and backward side by side. These run on every activation of every QAT
// step, so they are plain loops the compiler vectorizes: no calls, no branches, no exceptions.
// Not here: choosing scales (quant.h), the QAT network and its layers (qat.cpp).
//
// Rounding (qat.h, FakeQuantArgs): x / s is first clamped to [L - 1, U + 1] (L = qmin - z,
// U = qmax - z; clamping before rounding gives the same result because the rounding is monotone
// and the bounds are integers), so every value rounded is small. Nearest-even uses the float
// "magic number" 1.5 * 2^23: for |v| < 2^22, (v + 1.5*2^23) - 1.5*2^23 is v rounded to the
// nearest integer with ties to even under the default rounding mode, which is exactly
// quant_round(v, Nearest) (std::nearbyint) and the engine's round_half_even. floor comes from it
// as r - (r > y). Plain expressions, so the loops vectorize (SSE2 has no round instruction).
#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "lowbit/qat.h"

namespace lowbit {

namespace {

constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
constexpr int kLanes = 8;              // independent accumulators: vectorizable reductions

inline float round_small(float v) { return (v + kMagic) - kMagic; }
// floor(y) = r - [r > y] with r = round(y); the indicator as min(1, max(0, (r - y) * 2^126)), since
// r - y is 0 or at least an ulp of y (>= 2^-126 for every |y| >= 2^-102, and floor(y) of smaller
// y > 0 is 0 anyway): min/max vectorize, while a compare-select does not under -ftrapping-math.
inline float floor_small(float y) {
  const float r = round_small(y);
  return r - std::min(1.0f, std::max(0.0f, (r - y) * 0x1p126f));
}
inline float clampf(float v, float lo, float hi) { return std::min(std::max(v, lo), hi); }

// The engine's fixed-point requantization rounding of v (qat.h): floor(v + 1/2 +- e), the sign of
// e that of v (copysign: -0 rounds like +0, both give 0).
inline float round_fixedpoint(float v, float e) { return floor_small(v + (0.5f + std::copysign(e, v))); }

// What the forward rounds with; `fp` false = nearest even.
struct Rounder {
  bool fp;
  float e;
  explicit Rounder(const FakeQuantArgs& a)
      : fp(a.right >= 0), e(a.right >= 1 ? std::ldexp(1.0f, -(std::min(a.right, 40) + 1)) : 0.0f) {}
};

}  // namespace

Ste parse_ste(const std::string& name) {
  if (name == "identity") return Ste::Identity;
  if (name == "clipped") return Ste::Clipped;
  if (name == "lsq") return Ste::Lsq;
  throw Error("--ste: unknown straight-through estimator '" + name + "' (allowed: identity, clipped, lsq)");
}

const char* ste_name(Ste s) {
  switch (s) {
    case Ste::Identity: return "identity";
    case Ste::Clipped: return "clipped";
    case Ste::Lsq: return "lsq";
  }
  return "?";
}

FakeQuantArgs fake_quant_args(const QParams& qp, int32_t right, bool relu) {
  return {qp.scale, qp.zero_point, relu ? std::max(qp.qmin(), qp.zero_point) : qp.qmin(), qp.qmax(), right, relu};
}

float lsq_grad_scale(int64_t n, int32_t qmax) {
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(n) * static_cast<double>(qmax)));
}

// ---- forward ----
// v = x / s exactly as the engine divides its float input (nearest-even mode: the network input, and
// the float requantization variant); for the fixed-point emulation v = x * (1/s), one rounding
// more, of the size of the float noise the emulation has anyway (the engine's v is an exact
// integer sum times M, the network's a float sum), and several times cheaper than a division.

void fake_quant_forward(const float* x, int64_t n, const FakeQuantArgs& a, float* out) {
  const float s = a.scale, inv = 1.0f / s;
  const float lo = static_cast<float>(a.qmin - a.zero_point), hi = static_cast<float>(a.qmax - a.zero_point);
  const Rounder rd(a);
  if (rd.fp) {
    for (int64_t i = 0; i < n; ++i) out[i] = s * round_fixedpoint(clampf(x[i] * inv, lo, hi), rd.e);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = s * round_small(clampf(x[i] / s, lo, hi));
  }
}

// One pass: kLanes independent min/max accumulators beside the forward, so that it vectorizes.
void fake_quant_forward_minmax(const float* x, int64_t n, const FakeQuantArgs& a, float* out, float* xmin,
                               float* xmax) {
  const float s = a.scale, inv = 1.0f / s;
  const float lo = static_cast<float>(a.qmin - a.zero_point), hi = static_cast<float>(a.qmax - a.zero_point);
  const Rounder rd(a);
  float mn[kLanes], mx[kLanes];
  for (int l = 0; l < kLanes; ++l) mn[l] = mx[l] = n > 0 ? x[0] : 0.0f;
  const int64_t body = n - n % kLanes;
  if (rd.fp) {
    for (int64_t i = 0; i < body; i += kLanes)
      for (int l = 0; l < kLanes; ++l) {
        const float v = x[i + l];
        mn[l] = std::min(mn[l], v);
        mx[l] = std::max(mx[l], v);
        out[i + l] = s * round_fixedpoint(clampf(v * inv, lo, hi), rd.e);
      }
  } else {
    for (int64_t i = 0; i < body; i += kLanes)
      for (int l = 0; l < kLanes; ++l) {
        const float v = x[i + l];
        mn[l] = std::min(mn[l], v);
        mx[l] = std::max(mx[l], v);
        out[i + l] = s * round_small(clampf(v / s, lo, hi));
      }
  }
  for (int64_t i = body; i < n; ++i) {
    mn[0] = std::min(mn[0], x[i]);
    mx[0] = std::max(mx[0], x[i]);
  }
  fake_quant_forward(x + body, n - body, a, out + body);
  float rmn = mn[0], rmx = mx[0];
  for (int l = 1; l < kLanes; ++l) {
    rmn = std::min(rmn, mn[l]);
    rmx = std::max(rmx, mx[l]);
  }
  *xmin = rmn;
  *xmax = rmx;
}

void fake_quant_avgpool_round(const float* x, int64_t n, const FakeQuantArgs& a, float* out) {
  const float s = a.scale;
  for (int64_t i = 0; i < n; ++i) {
    // The window's sum of q: 4 x / s + 4 z is an integer up to float noise; snap it, then the
    // engine's rounding of sum / 4, half away from zero (qavgpool2x2_u8_ref).
    const double sum = std::nearbyint(4.0 * static_cast<double>(x[i]) / s) + 4.0 * a.zero_point;
    const double avg = sum >= 0 ? std::floor((sum + 2) / 4) : -std::floor((-sum + 2) / 4);
    out[i] = s * static_cast<float>(avg - a.zero_point);
  }
}

// ---- backward ----

void fake_quant_backward_identity(const float* x, const float* dy, int64_t n, const FakeQuantArgs& a, float* dx) {
  if (a.relu) {
    for (int64_t i = 0; i < n; ++i) {
      const float g = dy[i];
      dx[i] = x[i] > 0.0f ? g : 0.0f;
    }
  } else if (dx != dy) {
    for (int64_t i = 0; i < n; ++i) dx[i] = dy[i];
  }
}

// r = R(x / s) of x / s clamped to [L - 1, U + 1]: outside [L, U] exactly when the forward clamped.
void fake_quant_backward_clipped(const float* x, const float* dy, int64_t n, const FakeQuantArgs& a, float* dx) {
  const float s = a.scale;
  const float lo = static_cast<float>(a.qmin - a.zero_point), hi = static_cast<float>(a.qmax - a.zero_point);
  const Rounder rd(a);
  const float inv = 1.0f / s;
  // With a fused ReLU, x <= 0 is masked too: x > xmin with xmin = 0, else xmin = -inf (always true).
  const float xmin = a.relu ? 0.0f : -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    const float xv = x[i];
    const float v = clampf(rd.fp ? xv * inv : xv / s, lo - 1.0f, hi + 1.0f);
    const float r = rd.fp ? round_fixedpoint(v, rd.e) : round_small(v);
    const float g = dy[i];
    const bool pass = (r >= lo) & (r <= hi) & (xv > xmin);  // & not &&: no branches, the loop vectorizes
    dx[i] = pass ? g : 0.0f;
  }
}

// LSQ (Esser et al. 2020, eq. 3): the range test is on v = x / s itself, not on its rounding.
// Every candidate is computed, then selected, with kLanes independent sums, so that it vectorizes.
namespace {
// d(x_hat)/ds of one value and its gradient mask (R(v) - v inside, L at or below, U at or above),
// every candidate computed and then selected: a conditional float operation would be a branch.
template <bool kFixedPoint>
inline float lsq_one(float xv, float g, float s, float inv, float lo, float hi, float e, float* dxi) {
  const float v = kFixedPoint ? xv * inv : xv / s;
  const bool inside = (v > lo) & (v < hi);
  const float vc = clampf(v, lo, hi);  // keeps the rounding in its small range; inside: vc = v
  const float r = kFixedPoint ? round_fixedpoint(vc, e) : round_small(vc);
  const float in_range = r - v;
  const float edge = v <= lo ? lo : hi;
  *dxi = inside ? g : 0.0f;
  return g * (inside ? in_range : edge);
}

template <bool kFixedPoint>
double lsq_backward(const float* x, const float* dy, int64_t n, const FakeQuantArgs& a, float* dx) {
  const float s = a.scale, inv = 1.0f / s;
  const float lo = static_cast<float>(a.qmin - a.zero_point), hi = static_cast<float>(a.qmax - a.zero_point);
  const float e = Rounder(a).e;
  float acc[kLanes] = {};
  const int64_t body = n - n % kLanes;
  for (int64_t i = 0; i < body; i += kLanes)
    for (int l = 0; l < kLanes; ++l)
      acc[l] += lsq_one<kFixedPoint>(x[i + l], dy[i + l], s, inv, lo, hi, e, dx + i + l);
  for (int64_t i = body; i < n; ++i) acc[0] += lsq_one<kFixedPoint>(x[i], dy[i], s, inv, lo, hi, e, dx + i);
  double total = 0;
  for (int l = 0; l < kLanes; ++l) total += acc[l];
  return total;
}
}  // namespace

double fake_quant_backward_lsq(const float* x, const float* dy, int64_t n, const FakeQuantArgs& a, float* dx) {
  return a.right >= 0 ? lsq_backward<true>(x, dy, n, a, dx) : lsq_backward<false>(x, dy, n, a, dx);
}

}  // namespace lowbit
