// Tests of observers, calibrators and the KL helpers: seed check values, known answers on synthetic
// data, the fast KL curve against the literal one, and thresholds that do not depend on the batch
// size (1, 32, 1000) or order.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "lowbit/quant.h"

using namespace lowbit;

namespace {

std::vector<float> gaussian(uint64_t seed, int64_t n, double sd = 1.0) {
  Rng rng(seed);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = static_cast<float>(rng.normal() * sd);
  return x;
}

// Both passes over x in batches of `batch` (the last one partial).
TensorObserver observe(const std::vector<float>& x, int64_t batch, const std::string& name = "t") {
  TensorObserver obs(name);
  const int64_t n = static_cast<int64_t>(x.size());
  for (int64_t i = 0; i < n; i += batch) obs.observe_range(x.data() + i, std::min(batch, n - i));
  for (int64_t i = 0; i < n; i += batch) obs.observe_hist(x.data() + i, std::min(batch, n - i));
  return obs;
}

constexpr Calibrator kAll[] = {Calibrator::Max, Calibrator::ThreeSigma, Calibrator::Percentile, Calibrator::Kl,
                               Calibrator::Mse};

double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }
double normal_pdf(double x) { return std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI); }

}  // namespace

// ---- KL helpers: seed values ----

TEST(KlSeed, DivergenceBothDirections) {
  // Seed 000 Q4: KL(P||Q) = 0.3348, KL(Q||P) = 0.3819 (natural log).
  EXPECT_NEAR(kl_divergence({0.2, 0.8}, {0.6, 0.4}), 0.3348, 5e-5);
  EXPECT_NEAR(kl_divergence({0.6, 0.4}, {0.2, 0.8}), 0.3819, 5e-5);
  // Unnormalized inputs are normalized first.
  EXPECT_NEAR(kl_divergence({2, 8}, {6, 4}), 0.3348, 5e-5);
  // Q must cover P's support (forward KL is mass-covering).
  EXPECT_TRUE(std::isinf(kl_divergence({0.5, 0.5}, {1, 0})));
  EXPECT_EQ(kl_divergence({1, 0}, {0.5, 0.5}), std::log(2.0));
  EXPECT_THROW(kl_divergence({1, 2}, {1, 2, 3}), Error);
  EXPECT_THROW(kl_divergence({}, {}), Error);
  EXPECT_THROW(kl_divergence({-1, 2}, {1, 2}), Error);
  EXPECT_THROW(kl_divergence({0, 0}, {1, 2}), Error);
}

TEST(KlSeed, MergeExpand) {
  // Seed 002: P = [1,0,2,3,5,3,1,7] into 2 bins -> merged [6, 16] -> Q = [2,0,2,2,4,4,4,4].
  EXPECT_EQ(kl_merge_expand({1, 0, 2, 3, 5, 3, 1, 7}, 2), (std::vector<double>{2, 0, 2, 2, 4, 4, 4, 4}));
  // 7 bins into 3 groups of 2, the last group takes the remainder: [1,2 | 0,4 | 3,0,6].
  EXPECT_EQ(kl_merge_expand({1, 2, 0, 4, 3, 0, 6}, 3), (std::vector<double>{1.5, 1.5, 0, 4, 4.5, 0, 4.5}));
  EXPECT_THROW(kl_merge_expand({1, 2}, 3), Error);
  EXPECT_THROW(kl_merge_expand({1, 2}, 0), Error);
}

// ---- KL calibration ----

static void expect_same_curve(const Histogram& h, int bits, const char* what) {
  const std::vector<double> fast = kl_curve(h, bits), ref = kl_curve_reference(h, bits);
  ASSERT_EQ(fast.size(), ref.size()) << what;
  for (size_t k = 0; k < fast.size(); ++k) {
    if (std::isinf(ref[k])) {
      ASSERT_TRUE(std::isinf(fast[k])) << what << " bits " << bits << " candidate i=" << k + (1u << (bits - 1))
                                       << " ref inf, fast " << fast[k];
    } else {
      ASSERT_NEAR(fast[k], ref[k], 1e-9 * (1 + std::fabs(ref[k])))
          << what << " bits " << bits << " candidate i=" << k + (1u << (bits - 1));
    }
  }
}

TEST(KlCalibration, FastCurveMatchesLiteralDefinition) {
  // Gaussian |x| histogram with a sparse tail; 512 bins keep the O(bins^2) reference quick.
  Histogram g;
  g.amax = 6;
  g.counts.assign(512, 0);
  for (float v : gaussian(1, 20000)) ++g.counts[std::min<size_t>(511, static_cast<size_t>(std::fabs(v) / 6 * 512))];
  for (int bits : {8, 4, 2}) expect_same_curve(g, bits, "gaussian");
  // Spiky: empty bins, a big spike in bin 0, isolated outliers, a non-multiple bin count.
  Histogram s;
  s.amax = 1;
  s.counts.assign(389, 0);
  Rng rng(3);
  for (size_t j = 0; j < 200; ++j) s.counts[j] = rng.below(4) == 0 ? 0 : static_cast<int64_t>(rng.below(1000));
  s.counts[0] = 100000;
  s.counts[300] = 3;
  s.counts[388] = 1;
  for (int bits : {8, 5, 3}) expect_same_curve(s, bits, "spiky");
  // All mass in the last bin: only i = bins has finite KL.
  Histogram last;
  last.amax = 2;
  last.counts.assign(256, 0);
  last.counts[255] = 10;
  expect_same_curve(last, 8, "last bin");
  EXPECT_EQ(kl_threshold(last, 8), 2.0f);
}

TEST(KlCalibration, KnownAnswers) {
  // Mass only in bins 0..127 of 2048: at i = 128, P = Q exactly (groups of one bin), KL = 0, and
  // the first minimum is the upper edge of bin 127.
  Histogram h;
  h.amax = 2048;
  h.counts.assign(2048, 0);
  for (int j = 0; j < 128; ++j) h.counts[static_cast<size_t>(j)] = 1 + j % 5;
  EXPECT_NEAR(kl_curve(h, 8)[0], 0.0, 1e-15);
  EXPECT_EQ(kl_threshold(h, 8), 128.0f);
  Histogram empty;
  empty.amax = 0;
  empty.counts.assign(2048, 0);
  EXPECT_EQ(kl_threshold(empty, 8), 0.0f);
  Histogram too_few;
  too_few.amax = 1;
  too_few.counts.assign(64, 1);
  EXPECT_THROW(kl_threshold(too_few, 8), Error);
}

// ---- percentile, mse ----

TEST(Percentile, InterpolatesWithinBin) {
  Histogram h;
  h.amax = 10;
  h.counts.assign(10, 100);  // uniform on [0, 10)
  EXPECT_FLOAT_EQ(percentile_threshold(h, 50), 5.0f);
  EXPECT_FLOAT_EQ(percentile_threshold(h, 95), 9.5f);
  EXPECT_FLOAT_EQ(percentile_threshold(h, 12.5), 1.25f);
  EXPECT_FLOAT_EQ(percentile_threshold(h, 100), 10.0f);
  EXPECT_THROW(percentile_threshold(h, 0), Error);
  EXPECT_THROW(percentile_threshold(h, 100.5), Error);
}

TEST(Calibrators, GaussianKnownAnswers) {
  const std::vector<float> x = gaussian(11, 200000);
  const TensorObserver obs = observe(x, 1000);
  double sum = 0, sq = 0;
  float lo = x[0], hi = x[0];
  for (float v : x) sum += v, sq += static_cast<double>(v) * v, lo = std::min(lo, v), hi = std::max(hi, v);
  const double mean = sum / static_cast<double>(x.size());
  const double sd = std::sqrt(sq / static_cast<double>(x.size()) - mean * mean);

  const ClipRange mx = obs.calibrate(Calibrator::Max);
  EXPECT_EQ(mx.lo, lo);
  EXPECT_EQ(mx.hi, hi);

  const ClipRange s3 = obs.calibrate(Calibrator::ThreeSigma);
  EXPECT_NEAR(s3.hi, mean + 3 * sd, 1e-5);
  EXPECT_NEAR(s3.lo, mean - 3 * sd, 1e-5);
  EXPECT_NEAR(s3.hi, 3.0, 0.03);  // the population value

  // Percentiles of |x| for N(0, 1): 2 * Phi(t) - 1 = p.
  CalibOptions o;
  o.percentile = 99;
  EXPECT_NEAR(obs.calibrate(Calibrator::Percentile, o).hi, 2.5758, 0.04);
  o.percentile = 99.9;
  EXPECT_NEAR(obs.calibrate(Calibrator::Percentile, o).hi, 3.2905, 0.08);
  EXPECT_NEAR(obs.calibrate(Calibrator::Percentile).hi, 3.8906, 0.25);  // default 99.99

  // mse: the minimizer of the same error model written analytically for N(0, 1):
  //   E(T) = (T/qmax)^2 / 12 * P(|x| < T) + 2 * [(1 + T^2)(1 - Phi(T)) - T phi(T)]
  for (int bits : {3, 4}) {
    const double qmax = quant_max(bits);
    double best_t = 0, best_e = 1e300;
    for (double t = 0.5; t < 6; t += 1e-4) {
      const double e = (t / qmax) * (t / qmax) / 12 * (2 * normal_cdf(t) - 1) +
                       2 * ((1 + t * t) * (1 - normal_cdf(t)) - t * normal_pdf(t));
      if (e < best_e) best_e = e, best_t = t;
    }
    o.bits = bits;
    EXPECT_NEAR(obs.calibrate(Calibrator::Mse, o).hi, best_t, 0.05) << "bits " << bits;
  }
}

TEST(Calibrators, RareLargeOutliersAreClippedByKlAndMse) {
  std::vector<float> x = gaussian(5, 100000);
  for (int k = 0; k < 20; ++k) x[static_cast<size_t>(k * 4999)] = (k % 2 ? -1.0f : 1.0f) * (40.0f + static_cast<float>(k) / 2);
  const TensorObserver obs = observe(x, 1000);
  const float amax = obs.calibrate(Calibrator::Max).amax();
  EXPECT_GE(amax, 49.0f);
  CalibOptions o8;
  o8.bits = 8;
  const float kl8 = obs.calibrate(Calibrator::Kl, o8).amax();
  EXPECT_LT(kl8, 10.0f) << "kl 8 bits, max " << amax;
  EXPECT_GT(kl8, 2.0f);
  CalibOptions o4;
  o4.bits = 4;
  const float mse4 = obs.calibrate(Calibrator::Mse, o4).amax();
  EXPECT_LT(mse4, 10.0f) << "mse 4 bits, max " << amax;
  EXPECT_GT(mse4, 1.0f);
  const float kl4 = obs.calibrate(Calibrator::Kl, o4).amax();
  EXPECT_LT(kl4, 10.0f) << "kl 4 bits";
  CalibOptions p;
  p.percentile = 99.9;  // 20 outliers are 0.02% of the data: 99.99 would land among them
  EXPECT_LT(obs.calibrate(Calibrator::Percentile, p).amax(), 10.0f);
}

TEST(Calibrators, ExactZerosLeftOutOfHistogram) {
  // A ReLU output: 70% exact zeros. With zeros ignored the histogram holds only the positive part.
  std::vector<float> x = gaussian(8, 10000);
  int64_t nonzero = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = i % 10 < 7 ? 0.0f : std::fabs(x[i]);
    nonzero += x[i] != 0;
  }
  EXPECT_EQ(observe(x, 100).histogram().total(), nonzero);
  TensorObserver keep("relu", 2048, false);
  keep.observe_range(x.data(), static_cast<int64_t>(x.size()));
  keep.observe_hist(x.data(), static_cast<int64_t>(x.size()));
  EXPECT_EQ(keep.histogram().total(), static_cast<int64_t>(x.size()));
  EXPECT_GE(keep.histogram().counts[0], static_cast<int64_t>(x.size()) - nonzero);
}

TEST(Calibrators, IdenticalForBatchSizes1_32_1000AndOrder) {
  // Gaussian + rare outliers + exact zeros; 5003 values, so every batch size leaves a partial batch.
  std::vector<float> x = gaussian(21, 5003, 0.7);
  for (size_t i = 0; i < x.size(); i += 7) x[i] = 0.0f;
  x[100] = 9.0f;
  x[4000] = -12.0f;
  std::vector<float> shuffled = x;
  Rng rng(99);
  rng.shuffle(shuffled);
  const TensorObserver o1 = observe(x, 1), o32 = observe(x, 32), o1000 = observe(x, 1000);
  const TensorObserver os = observe(shuffled, 32);
  for (Calibrator c : kAll)
    for (int bits : {8, 4, 2}) {
      CalibOptions o;
      o.bits = bits;
      const ClipRange r1 = o1.calibrate(c, o), r32 = o32.calibrate(c, o), r1000 = o1000.calibrate(c, o);
      EXPECT_EQ(r1.lo, r32.lo) << calibrator_name(c) << " bits " << bits;
      EXPECT_EQ(r1.hi, r32.hi) << calibrator_name(c) << " bits " << bits;
      EXPECT_EQ(r1.lo, r1000.lo) << calibrator_name(c) << " bits " << bits;
      EXPECT_EQ(r1.hi, r1000.hi) << calibrator_name(c) << " bits " << bits;
      // Order: exact for everything but the Welford moments (3sigma), which agree to rounding.
      const ClipRange rs = os.calibrate(c, o);
      if (c == Calibrator::ThreeSigma) {
        EXPECT_NEAR(r1.lo, rs.lo, 1e-5) << "shuffled";
        EXPECT_NEAR(r1.hi, rs.hi, 1e-5) << "shuffled";
      } else {
        EXPECT_EQ(r1.lo, rs.lo) << calibrator_name(c) << " bits " << bits << " shuffled";
        EXPECT_EQ(r1.hi, rs.hi) << calibrator_name(c) << " bits " << bits << " shuffled";
      }
    }
  EXPECT_EQ(o1.histogram().counts, o1000.histogram().counts);
}

TEST(Calibrators, AllZeroAndConstantTensors) {
  const std::vector<float> zeros(100, 0.0f);
  const TensorObserver oz = observe(zeros, 32);
  for (Calibrator c : kAll) {
    const ClipRange r = oz.calibrate(c);
    EXPECT_EQ(r.lo, 0.0f) << calibrator_name(c);
    EXPECT_EQ(r.hi, 0.0f) << calibrator_name(c);
    for (Scheme s : {Scheme::Symmetric, Scheme::Affine}) {
      const QParams qp = choose_qparams(r.lo, r.hi, 8, s, false, "zeros");
      EXPECT_EQ(qp.scale, 1.0f);
      EXPECT_EQ(fake_quantize(0.0f, qp), 0.0f);
    }
  }
  const std::vector<float> twos(100, 2.5f);
  const TensorObserver oc = observe(twos, 32);
  for (Calibrator c : kAll) {
    const ClipRange r = oc.calibrate(c);
    EXPECT_LE(r.lo, r.hi) << calibrator_name(c);
    EXPECT_GT(r.hi, 2.4f) << calibrator_name(c);
    EXPECT_LE(r.hi, 2.5f) << calibrator_name(c);
    const QParams qp = choose_qparams(r.lo, r.hi, 8, Scheme::Affine, false, "twos");
    EXPECT_NEAR(fake_quantize(2.5f, qp), 2.5f, 0.1f) << calibrator_name(c);
  }
  EXPECT_EQ(oc.calibrate(Calibrator::Max).lo, 2.5f);
  EXPECT_EQ(oc.calibrate(Calibrator::Kl).hi, 2.5f);
  EXPECT_EQ(oc.calibrate(Calibrator::ThreeSigma).hi, 2.5f);
  // Nothing observed at all.
  TensorObserver none("none");
  none.observe_hist(nullptr, 0);
  for (Calibrator c : kAll) EXPECT_EQ(none.calibrate(c).amax(), 0.0f) << calibrator_name(c);
}

TEST(Observers, NanAndInfRejectedNamingTensor) {
  const float bad[] = {1.0f, 2.0f, std::nanf(""), 3.0f};
  const float inf[] = {1.0f, -INFINITY};
  TensorObserver obs("conv2.out");
  try {
    obs.observe_range(bad, 4);
    FAIL() << "NaN accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("conv2.out"), std::string::npos) << m;
    EXPECT_NE(m.find("NaN at index 2"), std::string::npos) << m;
  }
  EXPECT_THROW(obs.observe_range(inf, 2), Error);
  const float good[] = {1.0f, -2.0f};
  TensorObserver ok("fc");
  ok.observe_range(good, 2);
  EXPECT_THROW(ok.observe_hist(bad, 4), Error);
  EXPECT_THROW(ok.observe_range(good, 2), Error);  // pass 1 is over
  TensorObserver no_hist("fc2");
  no_hist.observe_range(good, 2);
  EXPECT_THROW(no_hist.calibrate(Calibrator::Kl), Error);
  EXPECT_EQ(no_hist.calibrate(Calibrator::Max).lo, -2.0f);
}

TEST(Observers, MomentsAreWelfordPopulationStd) {
  MomentsObserver m("m");
  const float x[] = {1e6f + 1, 1e6f + 2, 1e6f + 3, 1e6f + 4};  // large mean, small spread
  m.observe(x, 4);
  EXPECT_DOUBLE_EQ(m.mean(), 1e6 + 2.5);
  EXPECT_NEAR(m.stddev(), std::sqrt(1.25), 1e-9);
}

TEST(Calibrators, ParseNames) {
  EXPECT_EQ(parse_calibrator("3sigma"), Calibrator::ThreeSigma);
  for (Calibrator c : kAll) EXPECT_EQ(parse_calibrator(calibrator_name(c)), c);
  try {
    parse_calibrator("entropy");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max, 3sigma, percentile, kl, mse"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(calibrator_needs_histogram(Calibrator::Kl));
  EXPECT_FALSE(calibrator_needs_histogram(Calibrator::Max));
}
