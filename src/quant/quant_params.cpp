// Quantization parameters and the scalar/array quantize, dequantize and fake-quantize functions
// (DESIGN.md section 3). Not here: observers, calibrators (observer.cpp, calibrator.cpp).
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <string>

#include <fmt/format.h>

#include "lowbit/quant.h"

namespace lowbit {

Scheme parse_scheme(const std::string& name) {
  if (name == "symmetric") return Scheme::Symmetric;
  if (name == "affine") return Scheme::Affine;
  throw Error("unknown scheme '" + name + "' (allowed: symmetric, affine)");
}

Rounding parse_rounding(const std::string& name) {
  if (name == "nearest") return Rounding::Nearest;
  if (name == "floor") return Rounding::Floor;
  throw Error("unknown rounding '" + name + "' (allowed: nearest, floor)");
}

const char* scheme_name(Scheme s) { return s == Scheme::Symmetric ? "symmetric" : "affine"; }
const char* rounding_name(Rounding r) { return r == Rounding::Nearest ? "nearest" : "floor"; }

void check_bits(int bits) {
  if (bits < 2 || bits > 8) throw Error(fmt::format("bits must be in 2..8, got {}", bits));
}

int32_t quant_min(int bits, bool narrow) {
  check_bits(bits);
  return -(int32_t{1} << (bits - 1)) + (narrow ? 1 : 0);
}

int32_t quant_max(int bits) {
  check_bits(bits);
  return (int32_t{1} << (bits - 1)) - 1;
}

QParams choose_qparams(float lo, float hi, int bits, Scheme scheme, bool narrow,
                       const std::string& name) {
  check_bits(bits);
  if (!std::isfinite(lo) || !std::isfinite(hi))
    throw Error(fmt::format("{}: range [{}, {}] is not finite (NaN or Inf in the data?)", name, lo, hi));
  if (lo > hi) throw Error(fmt::format("{}: range [{}, {}] has lo > hi", name, lo, hi));
  QParams qp;
  qp.bits = bits;
  qp.narrow = narrow;
  qp.scheme = scheme;
  const float qmin = static_cast<float>(qp.qmin()), qmax = static_cast<float>(qp.qmax());
  if (scheme == Scheme::Symmetric) {
    const float amax = std::max(std::fabs(lo), std::fabs(hi));
    qp.scale = amax == 0.0f ? 1.0f : std::max(amax / qmax, FLT_MIN);
    qp.zero_point = 0;
    return qp;
  }
  lo = std::min(lo, 0.0f);  // widen so that 0 is exact
  hi = std::max(hi, 0.0f);
  if (hi == lo) {  // both 0: every value is 0
    qp.scale = 1.0f;
  } else {
    const float d = qmax - qmin;
    const float span = hi - lo;  // may overflow for ranges near FLT_MAX
    qp.scale = std::max(std::isfinite(span) ? span / d : hi / d - lo / d, FLT_MIN);
  }
  const float z = std::nearbyint(qmin - lo / qp.scale);
  qp.zero_point = static_cast<int32_t>(std::clamp(z, qmin, qmax));
  return qp;
}

std::vector<QParams> choose_qparams_per_channel(const float* x, int64_t channels, int64_t inner,
                                                int bits, Scheme scheme, bool narrow,
                                                const std::string& name) {
  std::vector<QParams> out;
  out.reserve(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) {
    MinMaxObserver mm(fmt::format("{} channel {}", name, c));
    mm.observe(x + c * inner, inner);
    out.push_back(choose_qparams(mm.min(), mm.max(), bits, scheme, narrow, name));
  }
  return out;
}

float quant_round(float v, Rounding r) {
  return r == Rounding::Nearest ? std::nearbyint(v) : std::floor(v);
}

// The clamp happens in float, before the conversion, so huge x / s never overflows an int.
static inline int32_t quantize_one(float x, float scale, float z, float qmin, float qmax,
                                   Rounding r) {
  return static_cast<int32_t>(std::clamp(quant_round(x / scale, r) + z, qmin, qmax));
}

int32_t quantize_value(float x, const QParams& qp, Rounding r) {
  if (std::isnan(x)) throw Error("cannot quantize NaN");
  return quantize_one(x, qp.scale, static_cast<float>(qp.zero_point),
                      static_cast<float>(qp.qmin()), static_cast<float>(qp.qmax()), r);
}

float dequantize_value(int32_t q, const QParams& qp) {
  return qp.scale * static_cast<float>(q - qp.zero_point);
}

float fake_quantize(float x, const QParams& qp, Rounding r) {
  return dequantize_value(quantize_value(x, qp, r), qp);
}

void quantize_array(const float* x, int64_t n, const QParams& qp, Rounding r, int8_t* q,
                    const std::string& name) {
  const float z = static_cast<float>(qp.zero_point);
  const float qmin = static_cast<float>(qp.qmin()), qmax = static_cast<float>(qp.qmax());
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) throw Error(fmt::format("{}: cannot quantize NaN at index {}", name, i));
    q[i] = static_cast<int8_t>(quantize_one(x[i], qp.scale, z, qmin, qmax, r));
  }
}

void dequantize_array(const int8_t* q, int64_t n, const QParams& qp, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = dequantize_value(q[i], qp);
}

void fake_quantize_array(const float* x, int64_t n, const QParams& qp, Rounding r, float* out,
                         const std::string& name) {
  const float z = static_cast<float>(qp.zero_point);
  const float qmin = static_cast<float>(qp.qmin()), qmax = static_cast<float>(qp.qmax());
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) throw Error(fmt::format("{}: cannot quantize NaN at index {}", name, i));
    const int32_t qi = quantize_one(x[i], qp.scale, z, qmin, qmax, r);
    out[i] = qp.scale * static_cast<float>(qi - qp.zero_point);
  }
}

}  // namespace lowbit
