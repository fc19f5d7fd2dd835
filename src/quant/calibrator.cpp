// Calibrators that turn a histogram of |x| into a clip threshold (percentile, kl, mse), the KL
// helpers they share with `lowbit calc`, and calibrator names. Not here: gathering the statistics
// (observer.cpp), the max and 3sigma ranges (TensorObserver::calibrate, they need no histogram).
#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "lowbit/quant.h"

namespace lowbit {

Calibrator parse_calibrator(const std::string& name) {
  if (name == "max") return Calibrator::Max;
  if (name == "3sigma") return Calibrator::ThreeSigma;
  if (name == "percentile") return Calibrator::Percentile;
  if (name == "kl") return Calibrator::Kl;
  if (name == "mse") return Calibrator::Mse;
  throw Error("unknown calibrator '" + name + "' (allowed: max, 3sigma, percentile, kl, mse)");
}

const char* calibrator_name(Calibrator c) {
  switch (c) {
    case Calibrator::Max: return "max";
    case Calibrator::ThreeSigma: return "3sigma";
    case Calibrator::Percentile: return "percentile";
    case Calibrator::Kl: return "kl";
    case Calibrator::Mse: return "mse";
  }
  return "?";
}

bool calibrator_needs_histogram(Calibrator c) {
  return c == Calibrator::Percentile || c == Calibrator::Kl || c == Calibrator::Mse;
}

// ---- KL helpers ----

static constexpr double kInf = std::numeric_limits<double>::infinity();

// KL(P||Q) of unnormalized p, q (validated by the caller): sum (p/sp) log((p/sp) / (q/sq)).
static double kl_unnormalized(const double* p, const double* q, size_t n) {
  double sp = 0, sq = 0;
  for (size_t j = 0; j < n; ++j) sp += p[j], sq += q[j];
  if (sq == 0) return kInf;
  double kl = 0;
  for (size_t j = 0; j < n; ++j) {
    if (p[j] == 0) continue;
    if (q[j] == 0) return kInf;
    const double pn = p[j] / sp, qn = q[j] / sq;
    kl += pn * std::log(pn / qn);
  }
  return kl;
}

double kl_divergence(const std::vector<double>& p, const std::vector<double>& q) {
  if (p.size() != q.size())
    throw Error(fmt::format("kl: P has {} entries but Q has {}", p.size(), q.size()));
  if (p.empty()) throw Error("kl: P and Q are empty");
  double sp = 0, sq = 0;
  for (size_t j = 0; j < p.size(); ++j) {
    if (!std::isfinite(p[j]) || p[j] < 0) throw Error(fmt::format("kl: P[{}] = {} is not a probability mass", j, p[j]));
    if (!std::isfinite(q[j]) || q[j] < 0) throw Error(fmt::format("kl: Q[{}] = {} is not a probability mass", j, q[j]));
    sp += p[j], sq += q[j];
  }
  if (sp == 0) throw Error("kl: P sums to 0");
  if (sq == 0) throw Error("kl: Q sums to 0");
  return kl_unnormalized(p.data(), q.data(), p.size());
}

// Merge raw[0..len) into k groups of len/k bins (the last group takes the remainder) and spread
// each group's total over the bins where mask != 0. out has len entries.
static void merge_expand(const double* raw, const double* mask, size_t len, size_t k, double* out) {
  const size_t per = len / k;
  for (size_t g = 0; g < k; ++g) {
    const size_t b = g * per, e = g + 1 == k ? len : b + per;
    double total = 0;
    size_t nz = 0;
    for (size_t j = b; j < e; ++j) total += raw[j], nz += mask[j] != 0;
    for (size_t j = b; j < e; ++j) out[j] = mask[j] != 0 ? total / static_cast<double>(nz) : 0.0;
  }
}

std::vector<double> kl_merge_expand(const std::vector<double>& hist, int k) {
  if (k < 1 || static_cast<size_t>(k) > hist.size())
    throw Error(fmt::format("kl-merge: bins must be in 1..{} (the histogram length), got {}", hist.size(), k));
  std::vector<double> out(hist.size());
  merge_expand(hist.data(), hist.data(), hist.size(), static_cast<size_t>(k), out.data());
  return out;
}

// ---- KL (entropy) calibration ----

static size_t kl_target_bins(const Histogram& h, int bits) {
  check_bits(bits);
  const size_t nq = size_t{1} << (bits - 1);
  if (static_cast<size_t>(h.bins()) < nq)
    throw Error(fmt::format("kl calibration at {} bits needs >= {} histogram bins, got {}", bits, nq, h.bins()));
  return nq;
}

std::vector<double> kl_curve_reference(const Histogram& h, int bits) {
  const size_t nq = kl_target_bins(h, bits), nb = static_cast<size_t>(h.bins());
  std::vector<double> curve, p, q;
  for (size_t i = nq; i <= nb; ++i) {
    p.assign(h.counts.begin(), h.counts.begin() + static_cast<std::ptrdiff_t>(i));
    const std::vector<double> raw = p;
    for (size_t j = i; j < nb; ++j) p[i - 1] += static_cast<double>(h.counts[j]);
    q.assign(i, 0.0);
    merge_expand(raw.data(), p.data(), i, nq, q.data());
    curve.push_back(kl_unnormalized(p.data(), q.data(), i));
  }
  return curve;
}

// With raw counts c_j, P_j = c_j except P_{i-1} (plus the outliers), Q_j = G_g / n_g on the bins
// of group g that are non-zero in P (G_g: raw total of the group, n_g: its non-zero P bins),
// sum_j P_j = N (all counts), sum_j Q_j = C_i (counts below i):
//   KL = (1/N) sum_{P_j>0} P_j log(P_j / Q_j) + log(C_i / N)
// and within a group sum P_j log(P_j / Q_j) = sum P_j log P_j - (sum P_j) log(G_g / n_g), so
// prefix sums of c, c log c and [c > 0] make each group O(1).
std::vector<double> kl_curve(const Histogram& h, int bits) {
  const size_t nq = kl_target_bins(h, bits), nb = static_cast<size_t>(h.bins());
  std::vector<double> c(nb + 1, 0.0), clogc(nb + 1, 0.0), nz(nb + 1, 0.0);  // prefix sums
  for (size_t j = 0; j < nb; ++j) {
    const double v = static_cast<double>(h.counts[j]);
    c[j + 1] = c[j] + v;
    clogc[j + 1] = clogc[j] + (v > 0 ? v * std::log(v) : 0.0);
    nz[j + 1] = nz[j] + (v > 0 ? 1.0 : 0.0);
  }
  const double n_all = c[nb];
  std::vector<double> curve;
  curve.reserve(nb - nq + 1);
  for (size_t i = nq; i <= nb; ++i) {
    if (n_all == 0 || c[i] == 0) {
      curve.push_back(kInf);
      continue;
    }
    const size_t per = i / nq;
    double sum = 0;
    for (size_t g = 0; g + 1 < nq; ++g) {
      const size_t b = g * per, e = b + per;
      const double total = c[e] - c[b];
      if (total > 0) sum += (clogc[e] - clogc[b]) - total * std::log(total / (nz[e] - nz[b]));
    }
    // Last group [b, i): bins b..i-2 as they are, bin i-1 carries the outliers in P.
    const size_t b = (nq - 1) * per;
    const double p_last = static_cast<double>(h.counts[i - 1]) + (n_all - c[i]);
    const double total = c[i] - c[b];
    const double n_nonzero = (nz[i - 1] - nz[b]) + (p_last > 0 ? 1.0 : 0.0);
    if (n_nonzero > 0) {
      if (total == 0) {
        curve.push_back(kInf);  // P has mass (the outliers) where Q has none
        continue;
      }
      const double log_q = std::log(total / n_nonzero);
      const double before = c[i - 1] - c[b];
      sum += (clogc[i - 1] - clogc[b]) - before * log_q;
      if (p_last > 0) sum += p_last * (std::log(p_last) - log_q);
    }
    curve.push_back(sum / n_all + std::log(c[i] / n_all));
  }
  return curve;
}

float kl_threshold(const Histogram& h, int bits) {
  if (h.total() == 0) return 0.0f;
  const std::vector<double> curve = kl_curve(h, bits);
  const size_t nq = size_t{1} << (bits - 1);
  // The first candidate within 1e-12 of the minimum: rounding in the prefix sums (~1e-16) must not
  // decide between candidates whose KL is equal in exact arithmetic.
  const double best_kl = *std::min_element(curve.begin(), curve.end());
  size_t best = 0;
  while (curve[best] > best_kl + 1e-12) ++best;
  return static_cast<float>(static_cast<double>(best + nq) * h.bin_width());
}

// ---- percentile and mse ----

float percentile_threshold(const Histogram& h, double p) {
  if (!(p > 0 && p <= 100)) throw Error(fmt::format("percentile must be in (0, 100], got {}", p));
  const int64_t total = h.total();
  if (total == 0) return 0.0f;
  const double target = p / 100.0 * static_cast<double>(total);
  double cum = 0;
  for (int k = 0; k < h.bins(); ++k) {
    const double ck = static_cast<double>(h.counts[static_cast<size_t>(k)]);
    if (ck > 0 && cum + ck >= target) {
      const double frac = std::clamp((target - cum) / ck, 0.0, 1.0);
      return static_cast<float>((k + frac) * h.bin_width());
    }
    cum += ck;
  }
  return h.amax;  // not reached: cum reaches total
}

// Candidates T = k * w, k = 1..bins. For T, with s = T / qmax:
//   err(T) = N_below * s^2 / 12 + sum_{bins j >= k} c_j * E[(x - T)^2 | x uniform in bin j]
// and E[(x - T)^2] = E[x^2] - 2 T E[x] + T^2, so suffix sums of c, c E[x], c E[x^2] give O(1) each.
float mse_threshold(const Histogram& h, int bits) {
  const double qmax = quant_max(bits);
  if (h.total() == 0) return 0.0f;
  const size_t nb = static_cast<size_t>(h.bins());
  const double w = h.bin_width();
  std::vector<double> c(nb + 1, 0.0), s1(nb + 1, 0.0), s2(nb + 1, 0.0);  // suffix sums from bin j
  for (size_t j = nb; j-- > 0;) {
    const double a = static_cast<double>(j) * w, b = a + w, cj = static_cast<double>(h.counts[j]);
    c[j] = c[j + 1] + cj;
    s1[j] = s1[j + 1] + cj * (a + b) / 2;
    s2[j] = s2[j + 1] + cj * (a * a + a * b + b * b) / 3;
  }
  size_t best_k = nb;
  double best_err = std::numeric_limits<double>::max();
  for (size_t k = 1; k <= nb; ++k) {
    const double t = static_cast<double>(k) * w, s = t / qmax;
    const double clip = std::max(s2[k] - 2 * t * s1[k] + t * t * c[k], 0.0);
    const double err = (c[0] - c[k]) * s * s / 12 + clip;
    if (err < best_err) best_err = err, best_k = k;
  }
  return static_cast<float>(static_cast<double>(best_k) * w);
}

}  // namespace lowbit
