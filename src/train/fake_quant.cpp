// Fake quantization over float arrays and its straight-through backward passes (identity,
// clipped, LSQ), forward and backward side by side. These run on every activation of every QAT
// step, so they are plain loops the compiler vectorizes: no calls, no branches, no exceptions.
// Not here: choosing scales (quant.h), the QAT network and its layers (qat.cpp).
//
// Rounding (qat.h, FakeQuantArgs): v = x / s is first clamped to [L - 1, U + 1] (L = qmin - z,
// U = qmax - z; clamping before rounding gives the same result because the rounding is monotone
// and the bounds are integers), so every value rounded is small. Nearest-even uses the float
// "magic number" 1.5 * 2^23: for |v| < 2^22, (v + 1.5*2^23) - 1.5*2^23 is v rounded to the
// nearest integer with ties to even under the default rounding mode, which is exactly
// quant_round(v, Nearest) (std::nearbyint) and the engine's round_half_even; floor comes from it.
// Plain expressions, so the loops vectorize (the generic build has SSE2, without a round
// instruction, and -ftrapping-math, under which a conditional float operation is a branch: every
// candidate is computed, then selected).
//
// v = x / s exactly as the engine divides its float input in nearest-even mode (the network input,
// and the float requantization variant); in the fixed-point emulation v = x * (1/s), one rounding
// more, of the size of the float noise the emulation has anyway (the engine's v is an exact integer
// sum times M, the network's a float sum), and several times cheaper than a division.
#include <algorithm>
#include <cmath>

#include "kernels/dispatch.h"
#include "lowbit/qat.h"
#include "train/fake_quant_loops.h"

namespace lowbit {

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
  FakeQuantArgs a;
  a.scale = qp.scale;
  a.zero_point = qp.zero_point;
  a.qmin = relu ? std::max(qp.qmin(), qp.zero_point) : qp.qmin();
  a.qmax = qp.qmax();
  a.right = right;
  a.relu = relu;
  return a;
}

float fixedpoint_threshold(int32_t right) { return threshold_of(right); }

float lsq_grad_scale(int64_t n, int32_t qmax) {
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(n) * static_cast<double>(qmax)));
}

void fake_quant_forward(const float* x, int64_t n, const FakeQuantArgs& a, float* out) {
  if (const auto f = kernels().fake_quant_forward) return f(x, n, a, out);
  fq_forward(x, n, a, out);
}

void fake_quant_forward_minmax(const float* x, int64_t n, const FakeQuantArgs& a, float* out, float* xmin,
                               float* xmax) {
  if (const auto f = kernels().fake_quant_forward_minmax) return f(x, n, a, out, xmin, xmax);
  fq_forward_minmax(x, n, a, out, xmin, xmax);
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

void fake_quant_backward_clipped(const float* x, const float* dy, int64_t n, const FakeQuantArgs& a, float* dx) {
  if (const auto f = kernels().fake_quant_backward_clipped) return f(x, dy, n, a, dx);
  fq_backward_clipped(x, dy, n, a, dx);
}

double fake_quant_backward_lsq(const float* x, const float* dy, int64_t n, const FakeQuantArgs& a, float* dx) {
  if (const auto f = kernels().fake_quant_backward_lsq) return f(x, dy, n, a, dx);
  return fq_backward_lsq(x, dy, n, a, dx);
}

}  // namespace lowbit
