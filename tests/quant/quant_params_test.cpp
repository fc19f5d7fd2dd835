// Tests of QParams, the rounding function and quantize/dequantize/fake-quantize, including every
// seed check value of ALGORITHMS.md "Quantization parameters".
#include <cfloat>
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "lowbit/quant.h"

using namespace lowbit;

static std::vector<int32_t> quantize_all(const std::vector<float>& x, const QParams& qp, Rounding r) {
  std::vector<int32_t> q;
  for (float v : x) q.push_back(quantize_value(v, qp, r));
  return q;
}

TEST(QuantRange, SignedAndNarrow) {
  EXPECT_EQ(quant_min(8, false), -128);
  EXPECT_EQ(quant_max(8), 127);
  EXPECT_EQ(quant_min(8, true), -127);
  EXPECT_EQ(quant_min(4, false), -8);
  EXPECT_EQ(quant_min(4, true), -7);
  EXPECT_EQ(quant_max(4), 7);
  EXPECT_EQ(quant_min(2, false), -2);
  EXPECT_EQ(quant_max(2), 1);
}

TEST(QuantRange, BitsOutOfRangeRejected) {
  for (int bits : {-1, 0, 1, 9, 16, 32}) {
    try {
      choose_qparams(-1, 1, bits, Scheme::Symmetric, false);
      FAIL() << "bits " << bits << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), "bits must be in 2..8, got " + std::to_string(bits));
    }
    EXPECT_THROW(quant_max(bits), Error) << "bits " << bits;
  }
}

TEST(QuantRound, TiesToEvenAndFloor) {
  const float v[] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 2.4999998f, 2.5000002f, -3.7f};
  const float nearest[] = {0, 2, 2, -0.0f, -2, -2, 2, 3, -4};
  const float floor_[] = {0, 1, 2, -1, -2, -3, 2, 2, -4};
  for (size_t i = 0; i < std::size(v); ++i) {
    EXPECT_EQ(quant_round(v[i], Rounding::Nearest), nearest[i]) << "v=" << v[i];
    EXPECT_EQ(quant_round(v[i], Rounding::Floor), floor_[i]) << "v=" << v[i];
  }
}

// Seed 000 Q3 and ALGORITHMS.md: A = [-2.2, -1.1, 1.1, 2.2], 4 bits, symmetric.
// The course divides by 2^(b-1) = 8 (s = 2.2/8 = 0.275, so 2.2 maps to 8 and clamps to 7), while
// DESIGN.md divides by qmax = 2^(b-1)-1 = 7 (s = 2.2/7, the int8 max|w|/127 rule). choose_qparams
// follows DESIGN; the course's value is reproduced by giving the scale explicitly (calc --scale).
TEST(QuantSeed, Q3aCourseScaleFloor) {
  const std::vector<float> a = {-2.2f, -1.1f, 1.1f, 2.2f};
  QParams qp = choose_qparams(-2.2f, 2.2f, 4, Scheme::Symmetric, false);
  qp.scale = 2.2f / 8;  // the course's s = amax / 2^(b-1)
  EXPECT_FLOAT_EQ(qp.scale, 0.275f);
  EXPECT_EQ(quantize_all(a, qp, Rounding::Floor), (std::vector<int32_t>{-8, -4, 4, 7}));  // 8 clamps to 7
  // The course writes the dequantized vector as [-2.2, -1.1, 1.1, 2.2]; the clamped 7 gives 1.925.
  EXPECT_FLOAT_EQ(dequantize_value(7, qp), 1.925f);
  EXPECT_FLOAT_EQ(dequantize_value(-8, qp), -2.2f);
}

TEST(QuantSeed, Q3aDesignScaleFloor) {
  // Same data with DESIGN's s = amax / qmax = 2.2/7: x/s = -7, -3.5, 3.5, 7 -> floor -7, -4, 3, 7.
  const std::vector<float> a = {-2.2f, -1.1f, 1.1f, 2.2f};
  const QParams qp = choose_qparams(-2.2f, 2.2f, 4, Scheme::Symmetric, false);
  EXPECT_FLOAT_EQ(qp.scale, 2.2f / 7);
  EXPECT_EQ(qp.zero_point, 0);
  EXPECT_EQ(quantize_all(a, qp, Rounding::Floor), (std::vector<int32_t>{-7, -4, 3, 7}));
}

// Seed 000 Q3(b): narrow [-7, 7], s = 4.4/14 (= 2.2/7), nearest -> [-7, -4, 4, 7] (3.5 ties to
// even 4), dequantized [-2.2, -1.257, 1.257, 2.2]. The course writes [-2.2, -1.1, 1.1, 2.2] for the
// dequantized vector: an arithmetic slip (4 * 0.3143 = 1.257); ALGORITHMS.md follows the math.
TEST(QuantSeed, Q3bNarrowNearest) {
  const std::vector<float> a = {-2.2f, -1.1f, 1.1f, 2.2f};
  const QParams qp = choose_qparams(-2.2f, 2.2f, 4, Scheme::Symmetric, true);
  EXPECT_EQ(qp.qmin(), -7);
  EXPECT_EQ(qp.qmax(), 7);
  EXPECT_NEAR(qp.scale, 4.4 / 14, 1e-7);
  EXPECT_EQ(quantize_all(a, qp, Rounding::Nearest), (std::vector<int32_t>{-7, -4, 4, 7}));
  const double expect[] = {-2.2, -1.257, 1.257, 2.2};
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_NEAR(fake_quantize(a[i], qp, Rounding::Nearest), expect[i], 5e-4) << "i=" << i;
}

TEST(QuantParams, SymmetricInt8IsMaxAbsOver127) {
  const QParams qp = choose_qparams(-0.5f, 1.27f, 8, Scheme::Symmetric, false);
  EXPECT_FLOAT_EQ(qp.scale, 1.27f / 127);
  EXPECT_EQ(qp.zero_point, 0);
  EXPECT_EQ(quantize_value(1.27f, qp), 127);
  EXPECT_EQ(quantize_value(-0.5f, qp), -50);
  EXPECT_EQ(quantize_value(-100.0f, qp), -128);  // clamp
  EXPECT_EQ(quantize_value(1e30f, qp), 127);
}

TEST(QuantParams, AffineWorkedExample) {
  // [-1, 3] on 8 bits: s = 4/255, z = round(-128 - (-1)/(4/255)) = round(-64.25) = -64.
  const QParams qp = choose_qparams(-1.0f, 3.0f, 8, Scheme::Affine, false);
  EXPECT_FLOAT_EQ(qp.scale, 4.0f / 255);
  EXPECT_EQ(qp.zero_point, -64);
  EXPECT_EQ(quantize_value(0.0f, qp), -64);  // 0 is exact
  EXPECT_EQ(dequantize_value(quantize_value(0.0f, qp), qp), 0.0f);
  EXPECT_EQ(quantize_value(3.0f, qp), 127);
  EXPECT_EQ(quantize_value(-1.0f, qp), -128);
  // The range is widened to include 0: [0.5, 2] behaves as [0, 2], z = qmin.
  const QParams pos = choose_qparams(0.5f, 2.0f, 8, Scheme::Affine, false);
  EXPECT_FLOAT_EQ(pos.scale, 2.0f / 255);
  EXPECT_EQ(pos.zero_point, -128);
  const QParams neg = choose_qparams(-3.0f, -1.0f, 4, Scheme::Affine, false);
  EXPECT_FLOAT_EQ(neg.scale, 3.0f / 15);
  EXPECT_EQ(neg.zero_point, 7);
}

TEST(QuantParams, ZeroWidthRangeGivesScaleOne) {
  for (Scheme s : {Scheme::Symmetric, Scheme::Affine}) {
    const QParams qp = choose_qparams(0.0f, 0.0f, 8, s, false);
    EXPECT_EQ(qp.scale, 1.0f) << scheme_name(s);
    EXPECT_EQ(dequantize_value(quantize_value(0.0f, qp), qp), 0.0f) << scheme_name(s);
  }
  // A constant non-zero tensor is not zero-width: symmetric amax = 3; affine widens to [0, 3].
  EXPECT_FLOAT_EQ(choose_qparams(3.0f, 3.0f, 8, Scheme::Symmetric, false).scale, 3.0f / 127);
  EXPECT_FLOAT_EQ(choose_qparams(3.0f, 3.0f, 8, Scheme::Affine, false).scale, 3.0f / 255);
  // Denormal ranges must not produce a zero or denormal scale.
  const QParams tiny = choose_qparams(-1e-44f, 1e-44f, 8, Scheme::Symmetric, false);
  EXPECT_EQ(tiny.scale, FLT_MIN);
  EXPECT_TRUE(std::isfinite(1e-44f / tiny.scale));
  // Huge ranges must not overflow the span.
  const QParams huge = choose_qparams(-3e38f, 3e38f, 8, Scheme::Affine, false);
  EXPECT_TRUE(std::isfinite(huge.scale));
  EXPECT_NEAR(huge.scale, 6e38 / 255, 1e33);
}

TEST(QuantParams, NonFiniteRangeRejectedNamingTensor) {
  const float nan = std::nanf(""), inf = INFINITY;
  for (auto [lo, hi] : {std::pair{nan, 1.0f}, {-1.0f, nan}, {-inf, 1.0f}, {0.0f, inf}}) {
    try {
      choose_qparams(lo, hi, 8, Scheme::Affine, false, "conv1.weight");
      FAIL() << "accepted [" << lo << ", " << hi << "]";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("conv1.weight"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(choose_qparams(2.0f, 1.0f, 8, Scheme::Affine, false), Error);
}

TEST(QuantParams, NanInputRejected) {
  const QParams qp = choose_qparams(-1, 1, 8, Scheme::Symmetric, false);
  EXPECT_THROW(quantize_value(std::nanf(""), qp), Error);
  std::vector<float> x = {0.5f, std::nanf(""), 0.25f};
  std::vector<int8_t> q(3);
  try {
    quantize_array(x.data(), 3, qp, Rounding::Nearest, q.data(), "fc1.out");
    FAIL() << "NaN accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fc1.out"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("index 1"), std::string::npos) << e.what();
  }
}

TEST(QuantParams, ArraysMatchScalarAndFakeQuantIsDequantOfQuant) {
  Rng rng(7);
  std::vector<float> x(1000);
  for (float& v : x) v = static_cast<float>(rng.normal() * 2.0);
  for (int bits = 2; bits <= 8; ++bits)
    for (Scheme s : {Scheme::Symmetric, Scheme::Affine})
      for (bool narrow : {false, true})
        for (Rounding r : {Rounding::Nearest, Rounding::Floor}) {
          const QParams qp = choose_qparams(-3.0f, 5.0f, bits, s, narrow);
          std::vector<int8_t> q(x.size());
          std::vector<float> dq(x.size()), fq(x.size());
          quantize_array(x.data(), static_cast<int64_t>(x.size()), qp, r, q.data());
          dequantize_array(q.data(), static_cast<int64_t>(x.size()), qp, dq.data());
          fake_quantize_array(x.data(), static_cast<int64_t>(x.size()), qp, r, fq.data());
          for (size_t i = 0; i < x.size(); ++i) {
            const int32_t qs = quantize_value(x[i], qp, r);
            ASSERT_EQ(q[i], qs) << "bits " << bits << " " << scheme_name(s) << " narrow " << narrow << " i " << i;
            ASSERT_GE(qs, qp.qmin());
            ASSERT_LE(qs, qp.qmax());
            ASSERT_EQ(dq[i], fq[i]) << "i " << i;
            ASSERT_EQ(fq[i], fake_quantize(x[i], qp, r)) << "i " << i;
            // Well inside the range (z rounding shifts its ends by up to s/2, narrow drops one
            // code), nearest rounding is off by at most s/2.
            if (x[i] > -2.9f && x[i] < 4.9f && r == Rounding::Nearest && s == Scheme::Affine && bits >= 6) {
              ASSERT_LE(std::fabs(fq[i] - x[i]), qp.scale * 0.5f * 1.0001f) << "x " << x[i];
            }
          }
        }
}

TEST(QuantParams, PerChannel) {
  // 3 channels x 4: own max|x| per channel.
  const std::vector<float> w = {1, -2, 0.5f, 0, 0, 0, 0, 0, 0.1f, 0.2f, -0.3f, 0.05f};
  const auto qps = choose_qparams_per_channel(w.data(), 3, 4, 8, Scheme::Symmetric, true, "conv2.weight");
  ASSERT_EQ(qps.size(), 3u);
  EXPECT_FLOAT_EQ(qps[0].scale, 2.0f / 127);
  EXPECT_EQ(qps[1].scale, 1.0f);  // all-zero channel
  EXPECT_FLOAT_EQ(qps[2].scale, 0.3f / 127);
  EXPECT_EQ(qps[0].qmin(), -127);
}

TEST(QuantParams, ParseNames) {
  EXPECT_EQ(parse_scheme("affine"), Scheme::Affine);
  EXPECT_EQ(parse_rounding("floor"), Rounding::Floor);
  EXPECT_THROW(parse_scheme("asym"), Error);
  try {
    parse_rounding("up");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nearest, floor"), std::string::npos) << e.what();
  }
}
