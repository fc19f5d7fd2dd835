// ABC-Net multi-bit binary weight bases (Lin et al., NeurIPS 2017; ALGORITHMS.md): M sign bases
// of the shifted, centered weights and their least-squares scales. Not here: training with them
// (the straight-through backward belongs to the QAT code) or binary convolution kernels.
#include <cmath>

#include <fmt/format.h>

#include "lowbit/quant.h"

namespace lowbit {

// Solves the m x m normal equations G a = r (G = B^T B, symmetric positive semi-definite) by a
// Cholesky factorization that skips any basis whose remaining diagonal is ~0, i.e. one that is a
// linear combination of the bases before it (identical or opposite bases are the common case):
// its alpha is 0, and the others still minimize ||W - B a||, since dropping a dependent column
// leaves the column space unchanged.
static std::vector<double> solve_normal_equations(const std::vector<double>& g,
                                                  const std::vector<double>& r, int m) {
  const auto at = [m](int i, int j) { return static_cast<size_t>(i * m + j); };
  std::vector<double> l(static_cast<size_t>(m * m), 0.0), y(static_cast<size_t>(m), 0.0);
  std::vector<double> a(static_cast<size_t>(m), 0.0);
  std::vector<bool> active(static_cast<size_t>(m), false);
  for (int k = 0; k < m; ++k) {
    double d = g[at(k, k)];
    for (int j = 0; j < k; ++j)
      if (active[j]) d -= l[at(k, j)] * l[at(k, j)];
    if (!(d > 1e-9 * g[at(k, k)])) continue;  // dependent on earlier bases
    active[k] = true;
    l[at(k, k)] = std::sqrt(d);
    for (int i = k + 1; i < m; ++i) {
      double v = g[at(i, k)];
      for (int j = 0; j < k; ++j)
        if (active[j]) v -= l[at(i, j)] * l[at(k, j)];
      l[at(i, k)] = v / l[at(k, k)];
    }
  }
  for (int i = 0; i < m; ++i) {  // L y = r
    if (!active[i]) continue;
    double v = r[i];
    for (int j = 0; j < i; ++j)
      if (active[j]) v -= l[at(i, j)] * y[j];
    y[i] = v / l[at(i, i)];
  }
  for (int i = m - 1; i >= 0; --i) {  // L^T a = y
    if (!active[i]) continue;
    double v = y[i];
    for (int j = i + 1; j < m; ++j)
      if (active[j]) v -= l[at(j, i)] * a[j];
    a[i] = v / l[at(i, i)];
  }
  return a;
}

AbcBases abc_bases(const float* w, int64_t n, int m) {
  if (m < 1 || m > 5) throw Error(fmt::format("abc: number of bases must be in 1..5, got {}", m));
  if (n < 1) throw Error("abc: no weights given");
  double mean = 0;
  for (int64_t j = 0; j < n; ++j) {
    if (!std::isfinite(w[j])) throw Error(fmt::format("abc: weight {} is not finite", j));
    mean += w[j];
  }
  mean /= static_cast<double>(n);
  double var = 0;
  for (int64_t j = 0; j < n; ++j) var += (w[j] - mean) * (w[j] - mean);
  const double sd = std::sqrt(var / static_cast<double>(n));

  AbcBases out;
  out.m = m;
  out.n = n;
  out.bases.resize(static_cast<size_t>(m * n));
  std::vector<double> g(static_cast<size_t>(m * m), 0.0), r(static_cast<size_t>(m), 0.0);
  for (int i = 0; i < m; ++i) {
    const double u = m == 1 ? 0.0 : -1.0 + i * 2.0 / (m - 1);
    out.u.push_back(static_cast<float>(u));
    int8_t* b = &out.bases[static_cast<size_t>(i * n)];
    for (int64_t j = 0; j < n; ++j) {
      b[j] = (w[j] - mean) + u * sd >= 0 ? 1 : -1;  // sign(0) = +1
      r[i] += b[j] * static_cast<double>(w[j]);
    }
  }
  for (int i = 0; i < m; ++i)
    for (int k = 0; k < m; ++k) {
      const int8_t* bi = &out.bases[static_cast<size_t>(i * n)];
      const int8_t* bk = &out.bases[static_cast<size_t>(k * n)];
      int64_t dot = 0;
      for (int64_t j = 0; j < n; ++j) dot += bi[j] * bk[j];
      g[static_cast<size_t>(i * m + k)] = static_cast<double>(dot);
    }
  const std::vector<double> alpha = solve_normal_equations(g, r, m);
  for (double a : alpha) out.alphas.push_back(static_cast<float>(a));
  out.approx.resize(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    double v = 0;
    for (int i = 0; i < m; ++i) v += alpha[i] * out.bases[static_cast<size_t>(i * n + j)];
    out.approx[static_cast<size_t>(j)] = static_cast<float>(v);
  }
  return out;
}

}  // namespace lowbit
