// Fake quantization and its straight-through estimators (src/train/fake_quant.cpp) against their
// definitions (ALGORITHMS.md "Straight-through estimators"; Esser et al. 2020 for LSQ): the forward
// equals quant.h's quantize-then-dequantize for every value, ties and clamps included; identity
// passes every gradient; clipped zeroes it exactly where the forward clamped; LSQ's step gradient on
// a small case worked by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/dispatch.h"
#include "lowbit/qat.h"
#include "train/fake_quant_loops.h"  // the generic loops, compiled here without ISA flags

namespace lowbit {
namespace {

QParams make_qp(float scale, int32_t z, int bits, bool narrow = false) {
  QParams qp;
  qp.scale = scale, qp.zero_point = z, qp.bits = bits, qp.narrow = narrow;
  qp.scheme = z == 0 ? Scheme::Symmetric : Scheme::Affine;
  return qp;
}

TEST(FakeQuant, ForwardEqualsQuantizeThenDequantize) {
  // Values on a fine grid (many exact ties x / s = k + 0.5 among them), beyond both clamps, huge.
  std::vector<float> x;
  for (int i = -400; i <= 400; ++i) x.push_back(static_cast<float>(i) * 0.0625f);
  for (float v : {1e6f, -1e6f, 3e38f, -3e38f, 0.0f, -0.0f}) x.push_back(v);
  const QParams cases[] = {make_qp(0.25f, 0, 4, true), make_qp(0.25f, 0, 4), make_qp(0.125f, 3, 4),
                           make_qp(2.0f / 255, 0, 8), make_qp(0.03f, -128, 8), make_qp(0.5f, 1, 2),
                           make_qp(0.1f, -5, 6)};
  for (const QParams& qp : cases) {
    std::vector<float> out(x.size()), out2(x.size());
    float mn = 0, mx = 0;
    fake_quant_forward(x.data(), static_cast<int64_t>(x.size()), fake_quant_args(qp), out.data());
    fake_quant_forward_minmax(x.data(), static_cast<int64_t>(x.size()), fake_quant_args(qp), out2.data(), &mn, &mx);
    for (size_t i = 0; i < x.size(); ++i) {
      const float want = fake_quantize(x[i], qp, Rounding::Nearest);
      ASSERT_EQ(out[i], want) << "x=" << x[i] << " scale=" << qp.scale << " z=" << qp.zero_point << " bits=" << qp.bits
                              << " narrow=" << qp.narrow << " index " << i;
      ASSERT_EQ(out2[i], want) << "minmax variant, x=" << x[i] << " index " << i;
    }
    EXPECT_EQ(mn, -3e38f);
    EXPECT_EQ(mx, 3e38f);
  }
}

TEST(FakeQuant, TiesGoToEvenAsTheEngine) {
  // s = 1, z = 0, 8 bits: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0, -1.5 -> -2 (DESIGN.md section 3).
  const float x[] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 126.5f, 127.5f, -128.5f};
  const float want[] = {0, 2, 2, 0, -2, 126, 127, -128};
  float out[8];
  fake_quant_forward(x, 8, fake_quant_args(make_qp(1.0f, 0, 8)), out);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(out[i], want[i]) << "x=" << x[i];
}

// The fixed-point rounding (right >= 0) against the engine's requantization itself: multipliers
// with few significant bits make every acc * M an exact float, so the two must agree exactly on
// every accumulator, the double-rounding thresholds and ties included.
TEST(FakeQuant, FixedPointRoundingEqualsTheEngineRequantization) {
  for (int shift : {1, 0, -1, -2, -3, -5, -8, -12}) {
    for (int j : {0, 1, 511, 1023}) {
      const int32_t q31 = (int32_t{1} << 30) + j * (int32_t{1} << 20);
      const double m = std::ldexp(static_cast<double>(q31), shift - 31);
      const FakeQuantArgs a{1.0f, 0, -128, 127, std::max(-shift, 0)};
      const int lim = std::min(4000, static_cast<int>(130 / m));
      for (int acc = -lim; acc <= lim; ++acc) {
        const float v = static_cast<float>(acc * m);
        ASSERT_EQ(static_cast<double>(v), acc * m) << "not exact: acc " << acc << " M " << m;
        const int32_t engine = std::clamp(multiply_by_quantized_multiplier(acc, {q31, shift}), -128, 127);
        float got;
        fake_quant_forward(&v, 1, a, &got);
        ASSERT_EQ(got, static_cast<float>(engine)) << "acc " << acc << " q31 " << q31 << " shift " << shift
                                                    << " acc*M " << acc * m;
      }
    }
  }
  // The plain nearest-even rounding differs from it: 2.483 (acc 35, M = 0.0709..., right 3) is 2
  // for nearest-even but 3 for the engine (srdhm gives 20 = 2.5 * 8, then 2.5 rounds away from 0).
  const float v = 2.4830f;
  float plain, fixed;
  fake_quant_forward(&v, 1, FakeQuantArgs{1.0f, 0, -128, 127, -1}, &plain);
  fake_quant_forward(&v, 1, FakeQuantArgs{1.0f, 0, -128, 127, 3}, &fixed);
  EXPECT_EQ(plain, 2.0f);
  EXPECT_EQ(fixed, 3.0f);
}

TEST(FakeQuant, MinMaxOverOddLengths) {
  for (int n : {1, 7, 8, 9, 17}) {
    std::vector<float> x(static_cast<size_t>(n)), out(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) x[size_t(i)] = static_cast<float>((i * 37) % 11) - 5.0f + 0.01f * static_cast<float>(i);
    float want_mn = x[0], want_mx = x[0];
    for (float v : x) want_mn = std::min(want_mn, v), want_mx = std::max(want_mx, v);
    float mn, mx;
    fake_quant_forward_minmax(x.data(), n, fake_quant_args(make_qp(0.1f, 0, 8)), out.data(), &mn, &mx);
    EXPECT_EQ(mn, want_mn) << "n=" << n;
    EXPECT_EQ(mx, want_mx) << "n=" << n;
  }
}

TEST(Ste, IdentityPassesEverything) {
  const float dy[] = {1, -2, 3, 0.5f, 7};
  float dx[5];
  const float x[] = {-3, 0, 0.1f, 100, -1e9f};
  fake_quant_backward_identity(x, dy, 5, fake_quant_args(make_qp(0.1f, 0, 4)), dx);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(dx[i], dy[i]);
  // With a fused ReLU: the ReLU's derivative, 1 where x > 0.
  fake_quant_backward_identity(x, dy, 5, fake_quant_args(make_qp(0.1f, -8, 4), -1, true), dx);
  const float relu[] = {0, 0, 1, 1, 0};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(dx[i], dy[i] * relu[i]) << "x=" << x[i];
}

TEST(Ste, ClippedZeroExactlyWhereClamped) {
  // s = 0.5, z = 0, 4 bits: q = round(x / s) must lie in [-8, 7].
  // x / s:        -10   -8.2  -7.8   0.4   7.2   7.6   20    -8.5 (tie -> -8: inside)  7.5 (tie -> 8: clamped)
  const float x[] = {-5.0f, -4.1f, -3.9f, 0.2f, 3.6f, 3.8f, 10.0f, -4.25f, 3.75f};
  const float keep[] = {0, 1, 1, 1, 1, 0, 0, 1, 0};
  const float dy[] = {1.5f, -2, 3, 4, 5, 6, 7, 8, 9};
  float dx[9];
  const FakeQuantArgs a = fake_quant_args(make_qp(0.5f, 0, 4));
  fake_quant_backward_clipped(x, dy, 9, a, dx);
  for (int i = 0; i < 9; ++i) EXPECT_EQ(dx[i], dy[i] * keep[i]) << "x=" << x[i] << " index " << i;
  // A fused ReLU, s = 0.5, z = 1, 4 bits: the lower clamp moves up to q = z (x_hat = 0), so L = 0
  // and U = qmax - z = 6. x / s = -10, -0.4, 0, 0.4, 6.0, 6.8, 7.2: x <= 0 gets no gradient (even
  // -0.4, whose R = 0 is inside), 0.4 and 6.0 pass, 6.8 and 7.2 round to 7 > U and are clamped.
  // The forward equals ReLU then quantize.
  {
    const QParams qp = make_qp(0.5f, 1, 4);
    const float xr[] = {-5.0f, -0.2f, 0.0f, 0.2f, 3.0f, 3.4f, 3.6f};
    const float want[] = {0, 0, 0, 1, 1, 0, 0};
    float dr[7];
    const float ones[] = {1, 1, 1, 1, 1, 1, 1};
    fake_quant_backward_clipped(xr, ones, 7, fake_quant_args(qp, -1, true), dr);
    for (int i = 0; i < 7; ++i) EXPECT_EQ(dr[i], want[i]) << "relu, x=" << xr[i];
    float fr[7];
    fake_quant_forward(xr, 7, fake_quant_args(qp, -1, true), fr);
    for (int i = 0; i < 7; ++i)
      EXPECT_EQ(fr[i], fake_quantize(std::max(xr[i], 0.0f), qp, Rounding::Nearest)) << "relu forward, x=" << xr[i];
  }
  // The definition, checked on a dense grid with an affine zero point: the gradient passes iff the
  // forward did not clamp, i.e. iff fake quantization is locally x_hat = s * round(x / s).
  const QParams qp = make_qp(0.2f, -3, 3);  // q in [-4, 3], x / s in [-1, 6] before clamping
  for (int i = -100; i <= 100; ++i) {
    const float xv = static_cast<float>(i) * 0.0173f, g = 1.0f;
    float d;
    fake_quant_backward_clipped(&xv, &g, 1, fake_quant_args(qp), &d);
    const float unclamped = std::nearbyint(xv / qp.scale) + static_cast<float>(qp.zero_point);
    const bool inside = unclamped >= -4 && unclamped <= 3;
    EXPECT_EQ(d, inside ? 1.0f : 0.0f) << "x=" << xv;
  }
}

TEST(Ste, LsqStepGradientWorkedByHand) {
  // s = 0.5, z = 0, 3 bits: qmin = -4, qmax = 3. v = x / s:
  //   x      -3.0   -1.1   0.3   0.9   1.6   2.0
  //   v      -6.0   -2.2   0.6   1.8   3.2   4.0
  //   dxh/ds -4     0.2    0.4   0.2   3     3      (round(v) - v inside; qmin, qmax at the clamps)
  //   dx/dy   0     1      1     1     0     0
  const float x[] = {-3.0f, -1.1f, 0.3f, 0.9f, 1.6f, 2.0f};
  const float dy[] = {0.5f, -1.0f, 2.0f, 1.0f, 0.25f, -0.5f};
  float dx[6];
  const double sum = fake_quant_backward_lsq(x, dy, 6, fake_quant_args(make_qp(0.5f, 0, 3)), dx);
  // 0.5*(-4) + (-1)(0.2) + 2(0.4) + 1(0.2) + 0.25(3) + (-0.5)(3) = -2 - 0.2 + 0.8 + 0.2 + 0.75 - 1.5
  EXPECT_NEAR(sum, -1.95, 1e-6);
  const float keep[] = {0, 1, 1, 1, 0, 0};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(dx[i], dy[i] * keep[i]) << "index " << i;
  // With a zero point z = 2 (affine, 3 bits): L = qmin - z = -6, U = qmax - z = 1.
  //   v = -6.0 -> L = -6 (at the clamp), -2.2 -> 0.2, 0.6 -> 0.4, 1.8 -> U = 1, 3.2 -> 1, 4.0 -> 1
  const double sz = fake_quant_backward_lsq(x, dy, 6, fake_quant_args(make_qp(0.5f, 2, 3)), dx);
  // 0.5(-6) + (-1)(0.2) + 2(0.4) + 1(1) + 0.25(1) + (-0.5)(1) = -3 - 0.2 + 0.8 + 1 + 0.25 - 0.5
  EXPECT_NEAR(sz, -1.65, 1e-6);
  const float keepz[] = {0, 1, 1, 0, 0, 0};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(dx[i], dy[i] * keepz[i]) << "z = 2, index " << i;
  // The gradient scale: g = 1 / sqrt(N * qmax) = 1 / sqrt(6 * 3).
  EXPECT_NEAR(lsq_grad_scale(6, 3), 1.0 / std::sqrt(18.0), 1e-7);
  EXPECT_NEAR(lsq_grad_scale(4704, 7), 1.0 / std::sqrt(4704.0 * 7.0), 1e-9);
}

TEST(Ste, LsqInsideEqualsFiniteDifferenceOfTheSteSurrogate) {
  // Inside the range LSQ differentiates s * round(x / s) treating round as the identity: the
  // derivative of s * r(x / s) with r'(v) = 1 is r(v) - v. Check against a central difference of
  // the surrogate s * (round(v0) + (x / s - v0)), round frozen at v0 = x / s0.
  const float s0 = 0.37f;
  for (float xv : {-0.9f, -0.2f, 0.05f, 0.61f, 1.0f}) {
    const double v0 = xv / static_cast<double>(s0), r0 = std::nearbyint(v0);
    auto surrogate = [&](double s) { return s * (r0 + (xv / s - v0)); };
    const double h = 1e-6, fd = (surrogate(s0 + h) - surrogate(s0 - h)) / (2 * h);
    const float g = 1.0f;
    float d;
    const double got = fake_quant_backward_lsq(&xv, &g, 1, fake_quant_args(make_qp(s0, 0, 4)), &d);
    EXPECT_NEAR(got, fd, 1e-5) << "x=" << xv;
  }
}

// The ISA builds of the loops (kernels().fake_quant_*) against the generic build, bit for bit:
// every rounding mode (nearest-even; fixed point with one threshold and with one per element),
// with and without ReLU, lengths around the vector widths, values at ties, clamps, NaN and -0.
TEST(FakeQuant, EveryIsaBuildMatchesTheGenericLoopsBitForBit) {
  Rng rng(77);
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t || !t->fake_quant_forward) continue;
    for (int mode = 0; mode < 3; ++mode)
      for (bool relu : {false, true})
        for (int64_t n : {1, 7, 16, 33, 1000}) {
          FakeQuantArgs a;
          a.scale = 0.037f;
          a.zero_point = relu ? -128 : 3;
          a.qmin = relu ? a.zero_point : -128;
          a.relu = relu;
          a.right = mode == 0 ? -1 : 9;
          std::vector<float> th(static_cast<size_t>(n));
          for (float& v : th) v = fixedpoint_threshold(1 + static_cast<int32_t>(rng.below(12)));
          if (mode == 2) a.thresholds = th.data();
          std::vector<float> x(static_cast<size_t>(n)), dy(static_cast<size_t>(n));
          for (size_t i = 0; i < x.size(); ++i) {
            const uint64_t kind = rng.below(10);
            x[i] = kind == 0 ? (static_cast<float>(rng.below(40)) - 20.5f) * a.scale  // ties
                   : kind == 1 ? -0.0f : kind == 2 ? std::nanf("") : rng.uniform(-6, 6);
            dy[i] = rng.uniform(-1, 1);
          }
          std::vector<float> want(x.size()), got(x.size()), wd(x.size()), gd(x.size());
          fq_forward(x.data(), n, a, want.data());
          t->fake_quant_forward(x.data(), n, a, got.data());
          ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * 4)) << isa_name(isa) << " forward mode " << mode;
          float mn0, mx0, mn1, mx1;
          fq_forward_minmax(x.data(), n, a, want.data(), &mn0, &mx0);
          t->fake_quant_forward_minmax(x.data(), n, a, got.data(), &mn1, &mx1);
          ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * 4)) << isa_name(isa) << " minmax mode " << mode;
          ASSERT_EQ(0, std::memcmp(&mn0, &mn1, 4));
          ASSERT_EQ(0, std::memcmp(&mx0, &mx1, 4));
          fq_backward_clipped(x.data(), dy.data(), n, a, wd.data());
          t->fake_quant_backward_clipped(x.data(), dy.data(), n, a, gd.data());
          ASSERT_EQ(0, std::memcmp(wd.data(), gd.data(), wd.size() * 4)) << isa_name(isa) << " clipped mode " << mode;
          const double s0 = fq_backward_lsq(x.data(), dy.data(), n, a, wd.data());
          const double s1 = t->fake_quant_backward_lsq(x.data(), dy.data(), n, a, gd.data());
          ASSERT_EQ(0, std::memcmp(wd.data(), gd.data(), wd.size() * 4)) << isa_name(isa) << " lsq mode " << mode;
          ASSERT_EQ(0, std::memcmp(&s0, &s1, 8)) << isa_name(isa) << " lsq sum mode " << mode;
        }
  }
}

TEST(Ste, ParseNamesTheFlag) {
  EXPECT_EQ(parse_ste("identity"), Ste::Identity);
  EXPECT_EQ(parse_ste("clipped"), Ste::Clipped);
  EXPECT_EQ(parse_ste("lsq"), Ste::Lsq);
  try {
    parse_ste("pact");
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--ste"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lowbit
