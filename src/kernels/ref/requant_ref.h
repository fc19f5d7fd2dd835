// Scalar requantization of int32 accumulators to the next layer's u8 activations: the
// specification that every SIMD kernel matches bit for bit, and the functions that PTQ simulation
// and QAT fake quantization call directly so that all three agree.
// Not here: computing scales (src/quant), GEMM (qkernels.h), SIMD versions (avx2/, avx512/).
//
// Engine convention: activations are stored as u8, u = q + 128, q the model's signed value. Zero
// points and clamp bounds given here are in that u8 domain; requant(acc) itself is domain-free.
//   out_u8 = clamp(z_out_u + requant(acc), lo_u, hi_u),   requant(acc) ~= acc * M
// ref: Jacob et al., CVPR 2018, section 2.2; TFLite's MultiplyByQuantizedMultiplier.
#pragma once

#include <cstdint>

namespace lowbit {

// How requant(acc) ~= acc * M is computed. Every variant is exact integer (or IEEE float32)
// arithmetic, so results are identical on every ISA.
enum class RequantVariant : uint8_t {
  // TFLite: x = acc * 2^left saturated to int32 (left = max(shift, 0)); y = srdhm(x, q31)
  // (product / 2^31 rounded to nearest, ties toward +inf); rounding_divide_by_pot(y, right)
  // (right = max(-shift, 0); ties away from zero).
  fixedpoint,
  // Same stages with every rounding replaced by floor: y = floor(x * q31 / 2^31) (no nudge,
  // saturated only for INT32_MIN * INT32_MIN), then y >> right (arithmetic shift = floor). The two
  // floors compose, so the result is exactly floor(x * q31 / 2^(31 + right)).
  fixedpoint_floor,
  // r = float(acc) * scale in IEEE float32 (float(acc) rounds to nearest even above 2^24), then
  // rounded to the nearest integer with ties to even.
  float_nearest,
  // As float_nearest, then floor instead of nearest.
  float_floor,
  // acc / D with the integer D = round(1/M) >= 1, the exact quotient rounded to nearest with ties
  // away from zero (seed 004, 2.4.7: integer division instead of a float multiply).
  divide_nearest,
  // acc / D rounded toward minus infinity (floor, not C++'s truncation).
  divide_floor,
};
const char* requant_variant_name(RequantVariant v);

// M ~= q31 * 2^(shift - 31), q31 in [2^30, 2^31). shift > 0 means a left shift (M >= 1).
struct QuantizedMultiplier {
  int32_t q31;
  int shift;
};

// frexp(M) = m * 2^e with m in [0.5, 1); q31 = round(m * 2^31) (half away from zero); if that is
// 2^31, halve it and add one to e; shift = e. Throws lowbit::Error for M <= 0, NaN, infinity, or M
// outside [2^-32, 2^30) (shift outside [-31, 30]), naming the value.
QuantizedMultiplier quantize_multiplier(double m);
// D = round(1/M) for the divide variants. Throws lowbit::Error when M is not finite and > 0, when
// M > 2 (D would be 0: divide cannot scale up) or when 1/M does not fit int32.
int32_t divisor_for_multiplier(double m);

// Saturating rounding doubling high multiply (TFLite / gemmlowp): (a*b + nudge) / 2^31 truncated,
// nudge = 2^30 when a*b >= 0 else 1 - 2^30. Equals floor((a*b + 2^30) / 2^31): a*b / 2^31 rounded
// to nearest, ties toward +inf. The one overflow, a = b = INT32_MIN, gives INT32_MAX.
int32_t srdhm(int32_t a, int32_t b);
// floor(a*b / 2^31), the same single saturation.
int32_t srdhm_floor(int32_t a, int32_t b);
// x / 2^e rounded to nearest, ties away from zero, e in [0, 31] (TFLite RoundingDivideByPOT).
int32_t rounding_divide_by_pot(int32_t x, int e);
// floor(x / 2^e) = arithmetic shift right, e in [0, 31].
int32_t floor_divide_by_pot(int32_t x, int e);
// acc * 2^left saturated to int32, left in [0, 30].
int32_t saturating_left_shift(int32_t x, int left);

// The fixedpoint variants in one call: requant(acc) for one channel.
int32_t multiply_by_quantized_multiplier(int32_t acc, QuantizedMultiplier qm);
int32_t multiply_by_quantized_multiplier_floor(int32_t acc, QuantizedMultiplier qm);

// Round-half-to-even of a float to an integer-valued float, independent of the FPU rounding mode.
float round_half_even(float x);

// Per-output-channel requantization parameters (arrays of the GEMM's M rows; per-tensor: fill
// every entry with the same value). Only the arrays the chosen variant reads need be non-null.
struct RequantParams {
  const int32_t* q31 = nullptr;      // fixedpoint*: [M] multiplier, in [2^30, 2^31)
  const int32_t* shift = nullptr;    // fixedpoint*: [M] exponent, in [-31, 30]
  const float* scale = nullptr;      // float_*: [M] M as float32, finite and > 0
  const int32_t* divisor = nullptr;  // divide_*: [M] D >= 1
  int32_t z_out = 128;               // output zero point, u8 domain
  int32_t lo = 0, hi = 255;          // clamp bounds, u8 domain, 0 <= lo <= hi <= 255 (ReLU: lo = z_out)
};

// requant(acc) of channel c without zero point or clamp, saturated to int32 (float variants:
// the rounded value clamped to [-2^31, 2^31 - 128] first).
int32_t requant_scaled(int32_t acc, const RequantParams& p, RequantVariant v, int c);
// The full requantization: clamp(z_out + requant_scaled(acc), lo, hi), computed without overflow.
uint8_t requantize_ref(int32_t acc, const RequantParams& p, RequantVariant v, int c);

}  // namespace lowbit
