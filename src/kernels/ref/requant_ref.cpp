// Scalar requantization: the specification (see requant_ref.h). Plain int64 arithmetic, written to
// be checked by eye against ALGORITHMS.md "Fixed-point requantization".
#include "kernels/ref/requant_ref.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "lowbit/core.h"

namespace lowbit {

namespace {
constexpr int64_t kInt32Min = std::numeric_limits<int32_t>::min();
constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

int32_t saturate_i32(int64_t v) {
  return static_cast<int32_t>(v < kInt32Min ? kInt32Min : (v > kInt32Max ? kInt32Max : v));
}

std::string num(double m) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", m);
  return buf;
}
}  // namespace

const char* requant_variant_name(RequantVariant v) {
  switch (v) {
    case RequantVariant::fixedpoint: return "fixedpoint";
    case RequantVariant::fixedpoint_floor: return "fixedpoint_floor";
    case RequantVariant::float_nearest: return "float_nearest";
    case RequantVariant::float_floor: return "float_floor";
    case RequantVariant::divide_nearest: return "divide_nearest";
    case RequantVariant::divide_floor: return "divide_floor";
  }
  return "?";
}

QuantizedMultiplier quantize_multiplier(double m) {
  if (!(m > 0.0) || !std::isfinite(m))
    throw Error("quantize_multiplier: requantization multiplier must be finite and > 0, got " + num(m));
  int e = 0;
  const double frac = std::frexp(m, &e);  // m = frac * 2^e, frac in [0.5, 1)
  // frac * 2^31 is exact in double (power-of-two scaling); llround rounds half away from zero.
  int64_t q = std::llround(frac * 2147483648.0);
  if (q == (int64_t{1} << 31)) {
    q /= 2;
    ++e;
  }
  if (e > 30)
    throw Error("quantize_multiplier: multiplier " + num(m) + " too large (needs shift " +
                std::to_string(e) + " > 30)");
  if (e < -31)
    throw Error("quantize_multiplier: multiplier " + num(m) + " too small (needs shift " +
                std::to_string(e) + " < -31)");
  return {static_cast<int32_t>(q), e};
}

int32_t divisor_for_multiplier(double m) {
  if (!(m > 0.0) || !std::isfinite(m))
    throw Error("divisor_for_multiplier: requantization multiplier must be finite and > 0, got " + num(m));
  const double d = std::round(1.0 / m);
  if (d < 1.0)
    throw Error("divisor_for_multiplier: multiplier " + num(m) +
                " > 2 cannot be a division (round(1/M) = 0); use fixedpoint or float requantization");
  if (d > static_cast<double>(kInt32Max))
    throw Error("divisor_for_multiplier: multiplier " + num(m) + " too small (round(1/M) exceeds int32)");
  return static_cast<int32_t>(d);
}

int32_t srdhm(int32_t a, int32_t b) {
  if (a == kInt32Min && b == kInt32Min) return static_cast<int32_t>(kInt32Max);
  const int64_t ab = int64_t{a} * int64_t{b};
  const int64_t nudge = ab >= 0 ? (int64_t{1} << 30) : (1 - (int64_t{1} << 30));
  return static_cast<int32_t>((ab + nudge) / (int64_t{1} << 31));  // C++ division truncates
}

int32_t srdhm_floor(int32_t a, int32_t b) {
  if (a == kInt32Min && b == kInt32Min) return static_cast<int32_t>(kInt32Max);
  const int64_t ab = int64_t{a} * int64_t{b};
  return static_cast<int32_t>(ab >> 31);  // arithmetic shift of a signed value = floor (C++20)
}

int32_t rounding_divide_by_pot(int32_t x, int e) {
  const int32_t mask = static_cast<int32_t>((int64_t{1} << e) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> e) + (remainder > threshold ? 1 : 0);
}

int32_t floor_divide_by_pot(int32_t x, int e) { return x >> e; }

int32_t saturating_left_shift(int32_t x, int left) {
  return saturate_i32(int64_t{x} * (int64_t{1} << left));
}

int32_t multiply_by_quantized_multiplier(int32_t acc, QuantizedMultiplier qm) {
  const int left = qm.shift > 0 ? qm.shift : 0;
  const int right = qm.shift > 0 ? 0 : -qm.shift;
  return rounding_divide_by_pot(srdhm(saturating_left_shift(acc, left), qm.q31), right);
}

int32_t multiply_by_quantized_multiplier_floor(int32_t acc, QuantizedMultiplier qm) {
  const int left = qm.shift > 0 ? qm.shift : 0;
  const int right = qm.shift > 0 ? 0 : -qm.shift;
  return floor_divide_by_pot(srdhm_floor(saturating_left_shift(acc, left), qm.q31), right);
}

float round_half_even(float x) {
  // x - floor(x) is exact in float; |x| >= 2^23 is already an integer (frac = 0).
  const float f = std::floor(x);
  const float frac = x - f;
  if (frac > 0.5f) return f + 1.0f;
  if (frac < 0.5f) return f;
  return std::fmod(f, 2.0f) == 0.0f ? f : f + 1.0f;  // tie: to the even neighbour
}

namespace {
int32_t float_to_i32_saturated(float r) {
  const float lo = -2147483648.0f, hi = 2147483520.0f;  // hi: largest float below 2^31
  return static_cast<int32_t>(r < lo ? lo : (r > hi ? hi : r));
}

int32_t divide_nearest(int32_t acc, int32_t d) {
  const int64_t a = acc < 0 ? -int64_t{acc} : int64_t{acc};
  const int64_t q = (a + d / 2) / d;  // ties (d even, remainder d/2) go up in magnitude
  return static_cast<int32_t>(acc < 0 ? -q : q);
}

int32_t divide_floor(int32_t acc, int32_t d) {
  int64_t q = int64_t{acc} / d;
  if (int64_t{acc} % d != 0 && acc < 0) q -= 1;
  return static_cast<int32_t>(q);
}
}  // namespace

int32_t requant_scaled(int32_t acc, const RequantParams& p, RequantVariant v, int c) {
  switch (v) {
    case RequantVariant::fixedpoint:
      return multiply_by_quantized_multiplier(acc, {p.q31[c], p.shift[c]});
    case RequantVariant::fixedpoint_floor:
      return multiply_by_quantized_multiplier_floor(acc, {p.q31[c], p.shift[c]});
    case RequantVariant::float_nearest:
      return float_to_i32_saturated(round_half_even(static_cast<float>(acc) * p.scale[c]));
    case RequantVariant::float_floor:
      return float_to_i32_saturated(std::floor(static_cast<float>(acc) * p.scale[c]));
    case RequantVariant::divide_nearest:
      return divide_nearest(acc, p.divisor[c]);
    case RequantVariant::divide_floor:
      return divide_floor(acc, p.divisor[c]);
  }
  return 0;
}

uint8_t requantize_ref(int32_t acc, const RequantParams& p, RequantVariant v, int c) {
  int64_t y = int64_t{p.z_out} + requant_scaled(acc, p, v, c);
  if (y < p.lo) y = p.lo;
  if (y > p.hi) y = p.hi;
  return static_cast<uint8_t>(y);
}

}  // namespace lowbit
