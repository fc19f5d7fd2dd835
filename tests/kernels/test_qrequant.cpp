// Scalar requantization (kernels/ref/requant_ref.h) against hand-worked cases and against exact
// arithmetic (int64 / long double) on many random values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "kernels/ref/requant_ref.h"
#include "lowbit/core.h"

namespace lowbit {
namespace {

constexpr int32_t kMin = std::numeric_limits<int32_t>::min();
constexpr int32_t kMax = std::numeric_limits<int32_t>::max();

// The exact real value acc * q31 * 2^(shift - 31) of a quantized multiplier applied to acc.
long double exact_product(int32_t acc, QuantizedMultiplier qm) {
  return std::ldexp(static_cast<long double>(int64_t{acc} * qm.q31), qm.shift - 31);
}

long double round_half_away(long double v) {
  return v >= 0 ? std::floor(v + 0.5L) : -std::floor(-v + 0.5L);
}

// Random int32 of random magnitude (all bit lengths equally likely), sign random.
int32_t random_i32(Rng& rng) {
  const int bits = static_cast<int>(rng.below(32));
  int64_t v = static_cast<int64_t>(rng.next() & ((uint64_t{1} << bits) - 1));
  if (rng.below(2)) v = -v;
  if (rng.below(200) == 0) return rng.below(2) ? kMin : kMax;
  return static_cast<int32_t>(v);
}

TEST(QRequant, QuantizeMultiplierHandWorked) {
  struct Case {
    double m;
    int32_t q31;
    int shift;
  };
  const Case cases[] = {
      {0.5, 1 << 30, 0},                 // 0.5 * 2^0
      {1.0, 1 << 30, 1},                 // 0.5 * 2^1
      {0.75, 1610612736, 0},             // 0.75 * 2^31
      {0.1, 1717986918, -3},             // 0.8 * 2^-3; 0.8 * 2^31 = 1717986918.4
      {std::ldexp(1.0, -10), 1 << 30, -9},
      {1.0 - std::ldexp(1.0, -40), 1 << 30, 1},  // rounds up to 2^31: halved, exponent + 1
      {3.0, 1610612736, 2},
      {std::ldexp(1.0, -32), 1 << 30, -31},  // smallest accepted
  };
  for (const Case& c : cases) {
    const QuantizedMultiplier qm = quantize_multiplier(c.m);
    EXPECT_EQ(qm.q31, c.q31) << "M = " << c.m;
    EXPECT_EQ(qm.shift, c.shift) << "M = " << c.m;
  }
}

TEST(QRequant, QuantizeMultiplierRejectsBadValues) {
  const double bad[] = {0.0, -0.5, std::nan(""), std::numeric_limits<double>::infinity(),
                        std::ldexp(1.0, 30), 1e12, std::ldexp(1.0, -33), 1e-12};
  for (double m : bad) {
    try {
      quantize_multiplier(m);
      ADD_FAILURE() << "accepted M = " << m;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("quantize_multiplier"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(divisor_for_multiplier(0.0), Error);
  EXPECT_THROW(divisor_for_multiplier(2.5), Error);
  EXPECT_THROW(divisor_for_multiplier(1e-10), Error);
  EXPECT_EQ(divisor_for_multiplier(0.1), 10);
  EXPECT_EQ(divisor_for_multiplier(0.3), 3);   // 1/0.3 = 3.33
  EXPECT_EQ(divisor_for_multiplier(1.9), 1);   // 0.53 rounds to 1
}

TEST(QRequant, QuantizeMultiplierWithinHalfLsbOnRandomValues) {
  Rng rng(11);
  for (int it = 0; it < 20000; ++it) {
    const double m = std::exp2(-32.0 + 61.99 * rng.uniform());  // [2^-32, 2^29.99]
    const QuantizedMultiplier qm = quantize_multiplier(m);
    ASSERT_GE(qm.q31, 1 << 30) << "M = " << m;
    ASSERT_GE(qm.shift, -31) << "M = " << m;
    ASSERT_LE(qm.shift, 30) << "M = " << m;
    const long double approx = std::ldexp(static_cast<long double>(qm.q31), qm.shift - 31);
    const long double half_lsb = std::ldexp(1.0L, qm.shift - 32);
    ASSERT_LE(std::fabs(approx - m), half_lsb) << "M = " << m << " q31 " << qm.q31 << " shift " << qm.shift;
  }
}

TEST(QRequant, SrdhmHandWorked) {
  EXPECT_EQ(srdhm(kMin, kMin), kMax);  // the one saturating case
  EXPECT_EQ(srdhm(kMin, kMax), -kMax);  // -(2^31 - 1) exactly
  EXPECT_EQ(srdhm(kMax, kMax), kMax - 1);
  EXPECT_EQ(srdhm(1 << 30, 1), 1);   // 0.5 rounds up
  EXPECT_EQ(srdhm(-(1 << 30), 1), 0);  // -0.5 rounds up (toward +inf), as TFLite's nudge does
  EXPECT_EQ(srdhm(3 << 29, 1), 1);     // 0.75
  EXPECT_EQ(srdhm(-(3 << 29), 1), -1);  // -0.75
  EXPECT_EQ(srdhm(1000, 1717986918), 800);  // 799.9999998
  EXPECT_EQ(srdhm_floor(1000, 1717986918), 799);
  EXPECT_EQ(srdhm_floor(-(1 << 30), 1), -1);
  EXPECT_EQ(srdhm_floor(kMin, kMin), kMax);
}

TEST(QRequant, SrdhmMatchesExactRoundingOnRandomValues) {
  Rng rng(12);
  for (int it = 0; it < 200000; ++it) {
    const int32_t a = random_i32(rng), b = random_i32(rng);
    if (a == kMin && b == kMin) continue;
    const int64_t p = int64_t{a} * b;
    // floor division by 2^31 and the remainder, written independently of the kernel formula
    int64_t q = p / (int64_t{1} << 31);
    int64_t r = p - q * (int64_t{1} << 31);
    if (r < 0) {
      q -= 1;
      r += int64_t{1} << 31;
    }
    ASSERT_EQ(srdhm(a, b), q + (r >= (int64_t{1} << 30) ? 1 : 0)) << "a " << a << " b " << b;
    ASSERT_EQ(srdhm_floor(a, b), q) << "a " << a << " b " << b;
  }
}

TEST(QRequant, RoundingDivideByPotHandWorked) {
  EXPECT_EQ(rounding_divide_by_pot(3, 1), 2);    // 1.5 -> 2
  EXPECT_EQ(rounding_divide_by_pot(-3, 1), -2);  // -1.5 -> -2 (away from zero)
  EXPECT_EQ(rounding_divide_by_pot(5, 1), 3);
  EXPECT_EQ(rounding_divide_by_pot(-5, 2), -1);  // -1.25
  EXPECT_EQ(rounding_divide_by_pot(-6, 2), -2);  // -1.5
  EXPECT_EQ(rounding_divide_by_pot(6, 2), 2);    // 1.5
  EXPECT_EQ(rounding_divide_by_pot(7, 0), 7);
  EXPECT_EQ(rounding_divide_by_pot(kMin, 31), -1);
  EXPECT_EQ(rounding_divide_by_pot(kMax, 31), 1);
  EXPECT_EQ(rounding_divide_by_pot(1 << 30, 31), 1);      // exactly 0.5
  EXPECT_EQ(rounding_divide_by_pot(-(1 << 30), 31), -1);  // exactly -0.5
  EXPECT_EQ(floor_divide_by_pot(-3, 1), -2);
  EXPECT_EQ(floor_divide_by_pot(-1, 31), -1);
  EXPECT_EQ(saturating_left_shift(1 << 30, 1), kMax);
  EXPECT_EQ(saturating_left_shift(-(1 << 30), 1), kMin);
  EXPECT_EQ(saturating_left_shift(-(1 << 30) - 1, 1), kMin);
  EXPECT_EQ(saturating_left_shift(12345, 3), 98760);
}

TEST(QRequant, RoundingDivideByPotMatchesExactOnRandomValues) {
  Rng rng(13);
  for (int it = 0; it < 200000; ++it) {
    const int32_t x = random_i32(rng);
    const int e = static_cast<int>(rng.below(32));
    const long double v = std::ldexp(static_cast<long double>(x), -e);
    ASSERT_EQ(rounding_divide_by_pot(x, e), static_cast<int32_t>(round_half_away(v))) << "x " << x << " e " << e;
    ASSERT_EQ(floor_divide_by_pot(x, e), static_cast<int32_t>(std::floor(v))) << "x " << x << " e " << e;
  }
}

// The seed's M = 0.1 worked through by hand: q31 = 1717986918, shift -3.
TEST(QRequant, MultiplyByQuantizedMultiplierHandWorked) {
  const QuantizedMultiplier qm = quantize_multiplier(0.1);
  EXPECT_EQ(multiply_by_quantized_multiplier(1000, qm), 100);  // srdhm 800, 800/8
  EXPECT_EQ(multiply_by_quantized_multiplier(5, qm), 1);       // srdhm 4, 4/8 = 0.5 -> 1
  EXPECT_EQ(multiply_by_quantized_multiplier(-5, qm), -1);     // srdhm -4, -0.5 -> -1
  EXPECT_EQ(multiply_by_quantized_multiplier(3, qm), 0);       // srdhm 2 (2.4), 0.25 -> 0
  EXPECT_EQ(multiply_by_quantized_multiplier_floor(5, qm), 0);    // floor(0.4999999)
  EXPECT_EQ(multiply_by_quantized_multiplier_floor(-5, qm), -1);  // floor(-0.4999999)
  // M = 4 with saturation of the left shift: 2^30 * 8 -> INT32_MAX, * 0.5 -> 2^30 (the tie
  // 2^30 - 0.5 goes up).
  EXPECT_EQ(multiply_by_quantized_multiplier(1 << 30, {1 << 30, 3}), 1 << 30);
  EXPECT_EQ(multiply_by_quantized_multiplier(100, quantize_multiplier(3.0)), 300);
}

TEST(QRequant, MultiplyByQuantizedMultiplierWithinOneLsbOnRandomValues) {
  Rng rng(14);
  for (int it = 0; it < 200000; ++it) {
    // M from 1e-6 to 0.99, and 1 to 100 on every fourth draw
    const bool big = it % 4 == 0;
    const double m = big ? std::exp(std::log(100.0) * rng.uniform())
                         : std::exp(std::log(1e-6) + (std::log(0.99) - std::log(1e-6)) * rng.uniform());
    const QuantizedMultiplier qm = quantize_multiplier(m);
    int32_t acc = random_i32(rng);
    if (big) acc = static_cast<int32_t>(acc / 128);  // keep acc * M inside int32
    const long double exact = exact_product(acc, qm);
    const int32_t got = multiply_by_quantized_multiplier(acc, qm);
    // Two roundings (srdhm to an integer, then the shift) are each at most half a unit.
    ASSERT_LE(std::fabs(got - exact), qm.shift > 0 ? 0.5L : 1.0L)
        << "acc " << acc << " M " << m << " q31 " << qm.q31 << " shift " << qm.shift;
    ASSERT_LE(std::fabs(got - static_cast<long double>(acc) * m), 2.0L) << "acc " << acc << " M " << m;
    // The floor variant is a single floor of the exact product.
    ASSERT_EQ(multiply_by_quantized_multiplier_floor(acc, qm), static_cast<int32_t>(std::floor(exact)))
        << "acc " << acc << " M " << m;
  }
}

TEST(QRequant, RoundHalfEven) {
  EXPECT_EQ(round_half_even(0.5f), 0.0f);
  EXPECT_EQ(round_half_even(1.5f), 2.0f);
  EXPECT_EQ(round_half_even(2.5f), 2.0f);
  EXPECT_EQ(round_half_even(-0.5f), 0.0f);
  EXPECT_EQ(round_half_even(-1.5f), -2.0f);
  EXPECT_EQ(round_half_even(-2.5f), -2.0f);
  EXPECT_EQ(round_half_even(2.4999998f), 2.0f);
  EXPECT_EQ(round_half_even(-3.7f), -4.0f);
  EXPECT_EQ(round_half_even(8388609.0f), 8388609.0f);  // odd integer above 2^23 stays
  EXPECT_EQ(round_half_even(1e20f), 1e20f);
}

TEST(QRequant, VariantsHandWorked) {
  const int32_t q31[1] = {quantize_multiplier(0.5).q31}, shift[1] = {quantize_multiplier(0.5).shift};
  const float scale[1] = {0.5f};
  const int32_t div[1] = {2};
  RequantParams p;
  p.q31 = q31;
  p.shift = shift;
  p.scale = scale;
  p.divisor = div;
  p.z_out = 0;
  p.lo = 0;
  p.hi = 255;
  struct Case {
    int32_t acc;
    RequantVariant v;
    int32_t want;
  };
  const Case cases[] = {
      {5, RequantVariant::fixedpoint, 3},         // 2.5 -> 3 (srdhm: ties up)
      {-5, RequantVariant::fixedpoint, -2},       // -2.5 -> -2 (srdhm: ties toward +inf)
      {-5, RequantVariant::fixedpoint_floor, -3},
      {5, RequantVariant::float_nearest, 2},      // ties to even
      {7, RequantVariant::float_nearest, 4},
      {-5, RequantVariant::float_nearest, -2},
      {-5, RequantVariant::float_floor, -3},
      {5, RequantVariant::divide_nearest, 3},     // ties away from zero
      {-5, RequantVariant::divide_nearest, -3},
      {-5, RequantVariant::divide_floor, -3},
      {-4, RequantVariant::divide_floor, -2},
      {kMin, RequantVariant::divide_nearest, kMin / 2},
  };
  for (const Case& c : cases)
    EXPECT_EQ(requant_scaled(c.acc, p, c.v, 0), c.want)
        << requant_variant_name(c.v) << " acc " << c.acc;
  const int32_t d3[1] = {3};
  p.divisor = d3;
  EXPECT_EQ(requant_scaled(4, p, RequantVariant::divide_nearest, 0), 1);
  EXPECT_EQ(requant_scaled(5, p, RequantVariant::divide_nearest, 0), 2);
  EXPECT_EQ(requant_scaled(-1, p, RequantVariant::divide_floor, 0), -1);
  EXPECT_EQ(requant_scaled(-3, p, RequantVariant::divide_floor, 0), -1);
  EXPECT_EQ(requant_scaled(kMin, p, RequantVariant::divide_floor, 0), -715827883);
}

TEST(QRequant, DivideMatchesExactOnRandomValues) {
  Rng rng(15);
  int32_t d[1];
  RequantParams p;
  p.divisor = d;
  for (int it = 0; it < 100000; ++it) {
    const int32_t acc = random_i32(rng);
    d[0] = 1 + static_cast<int32_t>(rng.below(it % 2 ? 20 : 1u << 30));
    const long double v = static_cast<long double>(acc) / d[0];
    ASSERT_EQ(requant_scaled(acc, p, RequantVariant::divide_nearest, 0), static_cast<int32_t>(round_half_away(v)))
        << "acc " << acc << " D " << d[0];
    ASSERT_EQ(requant_scaled(acc, p, RequantVariant::divide_floor, 0), static_cast<int32_t>(std::floor(v)))
        << "acc " << acc << " D " << d[0];
  }
}

TEST(QRequant, RequantizeAddsZeroPointAndClamps) {
  const int32_t q31[1] = {1 << 30}, shift[1] = {1};  // M = 1
  const float scale[1] = {1e30f};
  RequantParams p;
  p.q31 = q31;
  p.shift = shift;
  p.scale = scale;
  p.z_out = 140;  // q = 12
  p.lo = 140;     // fused ReLU
  p.hi = 200;
  EXPECT_EQ(requantize_ref(10, p, RequantVariant::fixedpoint, 0), 150);
  EXPECT_EQ(requantize_ref(-10, p, RequantVariant::fixedpoint, 0), 140);
  EXPECT_EQ(requantize_ref(100, p, RequantVariant::fixedpoint, 0), 200);
  EXPECT_EQ(requantize_ref(kMax, p, RequantVariant::fixedpoint, 0), 200);
  EXPECT_EQ(requantize_ref(kMin, p, RequantVariant::fixedpoint, 0), 140);
  EXPECT_EQ(requantize_ref(kMax, p, RequantVariant::float_nearest, 0), 200);  // float overflow to inf saturates
  EXPECT_EQ(requantize_ref(kMin, p, RequantVariant::float_floor, 0), 140);
}

}  // namespace
}  // namespace lowbit
