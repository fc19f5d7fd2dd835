// Observers: min/max, moments and |x| histograms gathered over calibration batches, and the
// two-pass TensorObserver that feeds the calibrators. Every statistic here is either exact (min,
// max, integer bin counts) or accumulated one element at a time (Welford), so no result depends on
// how the data was split into batches. Not here: turning statistics into ranges (calibrator.cpp).
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "lowbit/quant.h"

namespace lowbit {

static void check_finite(const std::string& name, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i]))
      throw Error(fmt::format("tensor '{}': {} at index {} of the batch", name,
                              std::isnan(x[i]) ? "NaN" : "Inf", i));
}

void MinMaxObserver::observe(const float* x, int64_t n) {
  check_finite(name_, x, n);
  if (n <= 0) return;
  if (count_ == 0) min_ = max_ = x[0];
  for (int64_t i = 0; i < n; ++i) {
    min_ = std::min(min_, x[i]);
    max_ = std::max(max_, x[i]);
  }
  count_ += n;
}

float MinMaxObserver::amax() const { return std::max(std::fabs(min()), std::fabs(max())); }

void MomentsObserver::observe(const float* x, int64_t n) {
  check_finite(name_, x, n);
  for (int64_t i = 0; i < n; ++i) {
    ++count_;
    const double d = x[i] - mean_;
    mean_ += d / static_cast<double>(count_);
    m2_ += d * (x[i] - mean_);
  }
}

double MomentsObserver::stddev() const {
  return count_ ? std::sqrt(std::max(m2_, 0.0) / static_cast<double>(count_)) : 0.0;
}

int64_t Histogram::total() const {
  int64_t t = 0;
  for (int64_t c : counts) t += c;
  return t;
}

HistogramObserver::HistogramObserver(float amax, int bins, bool ignore_zeros, std::string name)
    : name_(std::move(name)), ignore_zeros_(ignore_zeros) {
  if (bins < 1) throw Error(fmt::format("tensor '{}': histogram needs >= 1 bin, got {}", name_, bins));
  if (!std::isfinite(amax) || amax < 0)
    throw Error(fmt::format("tensor '{}': histogram range [0, {}] is invalid", name_, amax));
  hist_.counts.assign(static_cast<size_t>(bins), 0);
  hist_.amax = amax;
}

void HistogramObserver::observe(const float* x, int64_t n) {
  check_finite(name_, x, n);
  const int64_t last = hist_.bins() - 1;
  // The same expression for every value: its bin depends only on the value and amax.
  const double per_unit = hist_.amax > 0 ? hist_.bins() / static_cast<double>(hist_.amax) : 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (ignore_zeros_ && x[i] == 0.0f) continue;
    const int64_t k = static_cast<int64_t>(std::fabs(static_cast<double>(x[i])) * per_unit);
    ++hist_.counts[static_cast<size_t>(std::min(k, last))];
  }
}

TensorObserver::TensorObserver(std::string name, int bins, bool ignore_zeros)
    : name_(std::move(name)), bins_(bins), ignore_zeros_(ignore_zeros), minmax_(name_),
      moments_(name_) {}

void TensorObserver::observe_range(const float* x, int64_t n) {
  if (hist_)
    throw Error(fmt::format("tensor '{}': observe_range after observe_hist (pass 1 is over)", name_));
  minmax_.observe(x, n);
  moments_.observe(x, n);
}

void TensorObserver::observe_hist(const float* x, int64_t n) {
  if (!hist_) hist_.emplace(minmax_.amax(), bins_, ignore_zeros_, name_);
  hist_->observe(x, n);
}

const Histogram& TensorObserver::histogram() const {
  if (!hist_) throw Error(fmt::format("tensor '{}': no histogram (observe_hist pass not run)", name_));
  return hist_->histogram();
}

ClipRange TensorObserver::calibrate(Calibrator c, const CalibOptions& opt) const {
  const float lo = minmax_.min(), hi = minmax_.max();
  if (c == Calibrator::Max) return {lo, hi};
  if (c == Calibrator::ThreeSigma) {
    const double m = moments_.mean(), s3 = 3.0 * moments_.stddev();
    const float a = std::max(lo, static_cast<float>(m - s3));
    const float b = std::min(hi, static_cast<float>(m + s3));
    return {std::min(a, b), std::max(a, b)};  // a > b only by a rounding of the mean
  }
  const Histogram& h = histogram();
  float t = 0;
  if (c == Calibrator::Percentile) t = percentile_threshold(h, opt.percentile);
  if (c == Calibrator::Kl) t = kl_threshold(h, opt.bits);
  if (c == Calibrator::Mse) t = mse_threshold(h, opt.bits);
  ClipRange r{std::max(lo, -t), std::min(hi, t)};
  if (r.lo > r.hi) {  // every value lies beyond t on one side (e.g. a constant tensor)
    if (lo > 0)
      r.lo = r.hi;  // [t, t]; an affine scheme widens it to [0, t]
    else
      r.hi = r.lo;
  }
  return r;
}

}  // namespace lowbit
