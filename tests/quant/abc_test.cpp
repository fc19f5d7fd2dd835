// Tests of ABC-Net binary bases: a worked example by hand, least-squares optimality, linearly
// dependent bases, and argument checks.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "lowbit/quant.h"

using namespace lowbit;

static std::vector<int> basis(const AbcBases& r, int i) {
  return std::vector<int>(r.bases.begin() + i * r.n, r.bases.begin() + (i + 1) * r.n);
}

// Seed 000 Q1 gives the three bases of a 2x2 W and W_approx = [[-0.13, 0.13], [-0.065, 0.075]]
// but not W itself. W = that W_approx reproduces every number, worked by hand:
//   mean = 0.01 / 4 = 0.0025, W_bar = [-0.1325, 0.1275, -0.0675, 0.0725]
//   std = sqrt(mean(W_bar^2)) = sqrt(0.01090625) = 0.10443, u = -1, 0, 1
//   B1 = sign(W_bar - std) = [-1, 1, -1, -1], B2 = sign(W_bar) = [-1, 1, -1, 1],
//   B3 = sign(W_bar + std) = [-1, 1, 1, 1]        (the course's three matrices, row-major)
//   a1 B1 + a2 B2 + a3 B3 = W: a1+a2+a3 = 0.13, -a1-a2+a3 = -0.065, -a1+a2+a3 = 0.075
//   -> a3 = 0.0325, a2 = 0.07, a1 = 0.0275, and the approximation is exact.
// (The course writes W_bar = W, i.e. it takes the mean as 0; the bases come out the same.)
TEST(Abc, WorkedExampleFromSeed000Q1) {
  const std::vector<float> w = {-0.13f, 0.13f, -0.065f, 0.075f};
  const AbcBases r = abc_bases(w.data(), 4, 3);
  ASSERT_EQ(r.m, 3);
  EXPECT_EQ(r.u, (std::vector<float>{-1, 0, 1}));
  EXPECT_EQ(basis(r, 0), (std::vector<int>{-1, 1, -1, -1}));
  EXPECT_EQ(basis(r, 1), (std::vector<int>{-1, 1, -1, 1}));
  EXPECT_EQ(basis(r, 2), (std::vector<int>{-1, 1, 1, 1}));
  EXPECT_NEAR(r.alphas[0], 0.0275, 1e-6);
  EXPECT_NEAR(r.alphas[1], 0.07, 1e-6);
  EXPECT_NEAR(r.alphas[2], 0.0325, 1e-6);
  for (size_t j = 0; j < w.size(); ++j) EXPECT_NEAR(r.approx[j], w[j], 1e-6) << "j=" << j;
}

TEST(Abc, ShiftsForEveryM) {
  const std::vector<float> w = {0.3f, -0.1f, 0.2f, -0.4f, 0.05f};
  EXPECT_EQ(abc_bases(w.data(), 5, 1).u, (std::vector<float>{0}));
  EXPECT_EQ(abc_bases(w.data(), 5, 2).u, (std::vector<float>{-1, 1}));
  EXPECT_EQ(abc_bases(w.data(), 5, 5).u, (std::vector<float>{-1, -0.5f, 0, 0.5f, 1}));
  // M = 1: B = sign(W - mean), alpha = <W, B> / n.
  const AbcBases r = abc_bases(w.data(), 5, 1);
  const double mean = (0.3 - 0.1 + 0.2 - 0.4 + 0.05) / 5;  // 0.01
  double dot = 0;
  for (size_t j = 0; j < w.size(); ++j) {
    const int b = w[j] - mean >= 0 ? 1 : -1;
    EXPECT_EQ(r.bases[j], b) << "j=" << j;
    dot += b * static_cast<double>(w[j]);
  }
  EXPECT_NEAR(r.alphas[0], dot / 5, 1e-7);
}

TEST(Abc, LeastSquaresResidualOrthogonalToEveryBasis) {
  Rng rng(17);
  std::vector<float> w(300);
  for (float& v : w) v = static_cast<float>(rng.normal() * 0.1 + 0.02);
  for (int m = 1; m <= 5; ++m) {
    const AbcBases r = abc_bases(w.data(), 300, m);
    double norm = 0, err = 0;
    std::vector<double> resid(w.size());
    for (size_t j = 0; j < w.size(); ++j) {
      double a = 0;
      for (int i = 0; i < m; ++i) a += static_cast<double>(r.alphas[static_cast<size_t>(i)]) * r.bases[i * 300 + j];
      resid[j] = w[j] - a;
      norm += std::fabs(w[j]);
      err += resid[j] * resid[j];
    }
    for (int i = 0; i < m; ++i) {
      double d = 0;
      for (size_t j = 0; j < w.size(); ++j) d += resid[j] * r.bases[i * 300 + j];
      EXPECT_NEAR(d, 0.0, 1e-5 * norm) << "M=" << m << " basis " << i;
    }
    // Perturbing any alpha can only make the error worse.
    for (int i = 0; i < m; ++i) {
      double e2 = 0;
      for (size_t j = 0; j < w.size(); ++j) {
        const double v = resid[j] - 1e-3 * r.bases[i * 300 + j];
        e2 += v * v;
      }
      EXPECT_GT(e2, err) << "M=" << m << " basis " << i;
    }
  }
}

TEST(Abc, LinearlyDependentBases) {
  // W = [1, 1, 1, -1, -1, -1]: mean 0, std 1, so sign(W - 1) = sign(W) (sign(0) = +1): B1 = B2,
  // and B3 = sign(W + 1) is all +1. B2 is dependent; its alpha is 0 and W is still exact.
  const std::vector<float> w = {1, 1, 1, -1, -1, -1};
  const AbcBases r = abc_bases(w.data(), 6, 3);
  EXPECT_EQ(basis(r, 0), basis(r, 1));
  EXPECT_EQ(basis(r, 2), (std::vector<int>(6, 1)));
  EXPECT_NEAR(r.alphas[0], 1.0, 1e-6);
  EXPECT_EQ(r.alphas[1], 0.0f);
  EXPECT_NEAR(r.alphas[2], 0.0, 1e-6);
  for (size_t j = 0; j < w.size(); ++j) EXPECT_NEAR(r.approx[j], w[j], 1e-6) << "j=" << j;
  // A constant W: std = 0, all five bases are +1; only the first carries the value.
  const std::vector<float> c(7, 0.25f);
  const AbcBases rc = abc_bases(c.data(), 7, 5);
  EXPECT_NEAR(rc.alphas[0], 0.25, 1e-7);
  for (int i = 1; i < 5; ++i) EXPECT_EQ(rc.alphas[static_cast<size_t>(i)], 0.0f) << "basis " << i;
  for (float a : rc.approx) EXPECT_NEAR(a, 0.25f, 1e-7);
  // A single weight with M = 5.
  const float one = -0.7f;
  const AbcBases r1 = abc_bases(&one, 1, 5);
  EXPECT_NEAR(r1.approx[0], -0.7f, 1e-7);
  for (float a : r1.alphas) EXPECT_TRUE(std::isfinite(a));
}

TEST(Abc, BadArgumentsRejected) {
  const std::vector<float> w = {1, 2, 3};
  EXPECT_THROW(abc_bases(w.data(), 3, 0), Error);
  EXPECT_THROW(abc_bases(w.data(), 3, 6), Error);
  EXPECT_THROW(abc_bases(w.data(), 0, 2), Error);
  const std::vector<float> bad = {1, std::nanf(""), 3};
  EXPECT_THROW(abc_bases(bad.data(), 3, 2), Error);
}
