// lowbit quantization math (DESIGN.md section 3, ALGORITHMS.md): quantization parameters, the one
// rounding function, quantize/dequantize/fake-quantize, observers that gather statistics over
// calibration batches, calibrators that turn statistics into clip ranges, the KL helpers of entropy
// calibration, and ABC-Net binary bases.
// Not here: anything that knows about layers, models or files (the quantizer and engine build on
// this; the `lowbit calc` subcommand prints these computations step by step).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lowbit/core.h"

namespace lowbit {

// ---- quantization parameters ----

enum class Scheme { Symmetric, Affine };
enum class Rounding { Nearest, Floor };  // nearest = ties to even (as ONNX)

Scheme parse_scheme(const std::string& name);      // "symmetric" | "affine"; Error lists them
Rounding parse_rounding(const std::string& name);  // "nearest" | "floor"; Error lists them
const char* scheme_name(Scheme s);
const char* rounding_name(Rounding r);

// Error "bits must be in 2..8, got N" unless 2 <= bits <= 8.
void check_bits(int bits);
// Signed b-bit range: [-2^(b-1), 2^(b-1)-1]; narrow drops the lowest code: [-(2^(b-1)-1), 2^(b-1)-1].
int32_t quant_min(int bits, bool narrow);
int32_t quant_max(int bits);

// r = scale * (q - zero_point), q in [qmin(), qmax()].
struct QParams {
  float scale = 1.0f;
  int32_t zero_point = 0;
  int bits = 8;
  bool narrow = false;
  Scheme scheme = Scheme::Symmetric;
  int32_t qmin() const { return quant_min(bits, narrow); }
  int32_t qmax() const { return quant_max(bits); }
};

// Parameters for the clip range [lo, hi] (lo <= hi).
//   symmetric: z = 0, s = amax / qmax with amax = max(|lo|, |hi|)  (int8: max|w| / 127)
//   affine:    range widened to include 0, s = (hi - lo) / (qmax - qmin), z = round(qmin - lo / s)
// A zero-width range (all values 0 after widening) gives scale 1 (every value quantizes to z and
// dequantizes to exactly 0; 1 keeps requantization multipliers s_w*s_in/s_out finite). A range so
// small that s would fall below the smallest normal float gets s = FLT_MIN, so x / s never divides
// by zero or a denormal. Error (naming `name`) for NaN/Inf in the range, lo > hi, or bad bits.
QParams choose_qparams(float lo, float hi, int bits, Scheme scheme, bool narrow,
                       const std::string& name = "tensor");

// Per-channel parameters along axis 0 of x laid out as (channels, inner), e.g. conv weights
// (OC, C*KH*KW): each channel's own min/max. Error naming `name` for NaN/Inf.
std::vector<QParams> choose_qparams_per_channel(const float* x, int64_t channels, int64_t inner,
                                                int bits, Scheme scheme, bool narrow,
                                                const std::string& name = "tensor");

// THE rounding function: nearest = std::nearbyint under the default rounding mode (ties to even),
// floor = std::floor. Returns an integral float. Everything that rounds x/s calls this.
float quant_round(float v, Rounding r);

// q = clamp(quant_round(x / s) + z, qmin, qmax). Error for NaN x.
int32_t quantize_value(float x, const QParams& qp, Rounding r = Rounding::Nearest);
float dequantize_value(int32_t q, const QParams& qp);  // s * (q - z)
// dequantize(quantize(x)): the forward pass of QAT and of the PTQ simulation.
float fake_quantize(float x, const QParams& qp, Rounding r = Rounding::Nearest);

// Array versions over n elements; codes fit int8 because bits <= 8. Error naming `name` and the
// index for a NaN input.
void quantize_array(const float* x, int64_t n, const QParams& qp, Rounding r, int8_t* q,
                    const std::string& name = "tensor");
void dequantize_array(const int8_t* q, int64_t n, const QParams& qp, float* out);
void fake_quantize_array(const float* x, int64_t n, const QParams& qp, Rounding r, float* out,
                         const std::string& name = "tensor");

// ---- observers: statistics over a stream of batches ----
// Each throws Error naming its tensor and the index in the batch for NaN or Inf.

class MinMaxObserver {
 public:
  explicit MinMaxObserver(std::string name = "tensor") : name_(std::move(name)) {}
  void observe(const float* x, int64_t n);
  int64_t count() const { return count_; }
  float min() const { return count_ ? min_ : 0.0f; }  // 0 when nothing was observed
  float max() const { return count_ ? max_ : 0.0f; }
  float amax() const;                                 // max |x|

 private:
  std::string name_;
  int64_t count_ = 0;
  float min_ = 0, max_ = 0;
};

// Mean and population standard deviation (ddof 0) by Welford's update, in double, one element at a
// time: the result depends only on the element order, never on how it was split into batches.
class MomentsObserver {
 public:
  explicit MomentsObserver(std::string name = "tensor") : name_(std::move(name)) {}
  void observe(const float* x, int64_t n);
  int64_t count() const { return count_; }
  double mean() const { return mean_; }
  double stddev() const;

 private:
  std::string name_;
  int64_t count_ = 0;
  double mean_ = 0, m2_ = 0;
};

// counts[k] = number of |x| in [k*w, (k+1)*w), w = amax / bins; |x| = amax goes to the last bin.
struct Histogram {
  std::vector<int64_t> counts;
  float amax = 0;
  int bins() const { return static_cast<int>(counts.size()); }
  double bin_width() const { return counts.empty() ? 0.0 : static_cast<double>(amax) / bins(); }
  int64_t total() const;
};

// Histogram of |x| over a range fixed up front ([0, amax], amax from a first min/max pass), so the
// counts are exact integers and do not depend on the batch size or order. Values above amax are
// counted in the last bin. ignore_zeros leaves exact zeros out (ALGORITHMS.md, KL trouble (a): the
// ReLU spike at 0 would dominate; 0 is exact under every scheme anyway).
class HistogramObserver {
 public:
  HistogramObserver(float amax, int bins = 2048, bool ignore_zeros = true,
                    std::string name = "tensor");
  void observe(const float* x, int64_t n);
  const Histogram& histogram() const { return hist_; }

 private:
  std::string name_;
  bool ignore_zeros_;
  Histogram hist_;
};

// ---- calibrators: statistics -> clip range ----

enum class Calibrator { Max, ThreeSigma, Percentile, Kl, Mse };
Calibrator parse_calibrator(const std::string& name);  // max|3sigma|percentile|kl|mse; Error lists them
const char* calibrator_name(Calibrator c);
bool calibrator_needs_histogram(Calibrator c);  // percentile, kl, mse

struct ClipRange {
  float lo = 0, hi = 0;
  float amax() const { return -lo > hi ? -lo : hi; }  // what a symmetric scheme uses
};

struct CalibOptions {
  int bits = 8;              // kl: 2^(bits-1) target bins; mse: the quantizer whose error counts
  double percentile = 99.99; // percentile calibrator, in (0, 100]
};

// Thresholds on |x| from a histogram; each returns 0 for an empty histogram.
// percentile: the p-th percentile of |x|, interpolated linearly within its bin.
float percentile_threshold(const Histogram& h, double p);
// kl: TensorRT entropy calibration (ALGORITHMS.md). Candidate i = nq .. bins, nq = 2^(bits-1):
// P = counts[0..i) with the mass of bins >= i added to P[i-1]; Q = counts[0..i) merged into nq
// groups and spread over the bins non-zero in P; KL(P||Q) after normalizing both.
// kl_curve()[i - nq] is that KL (+inf where Q misses P's support), computed with prefix sums in
// O(bins * nq); kl_curve_reference() computes it literally with kl_merge_expand and kl_divergence
// in O(bins^2): the specification and test oracle. Error when bins < nq.
std::vector<double> kl_curve(const Histogram& h, int bits);
std::vector<double> kl_curve_reference(const Histogram& h, int bits);
// The threshold of the first minimum of kl_curve (first candidate within 1e-12 of it, so that
// rounding does not decide exact ties): i * bin_width, the upper edge of the last bin P covers
// (i = bins gives amax).
float kl_threshold(const Histogram& h, int bits);
// mse: the clip T (a bin edge) minimizing the expected squared error of a symmetric b-bit
// quantizer with s = T / qmax: s^2/12 per value inside [0, T] (uniform rounding noise, as in
// ACIQ, Banner et al. 2019) plus (|x| - T)^2 per clipped value, values uniform within a bin.
float mse_threshold(const Histogram& h, int bits);

// Everything the calibrators need, gathered in two passes over the same calibration batches:
//   pass 1: observe_range(batch) for each batch  (min/max, mean/std)
//   pass 2: observe_hist(batch) for each batch   (histogram of |x| over [0, amax of pass 1])
// Fixing the histogram range before filling it makes every threshold independent of the batch
// size and order (a one-pass histogram grown on the fly depends on the first batch's range).
// Pass 2 is needed only by calibrator_needs_histogram() calibrators. With ignore_zeros (default)
// the histogram, hence percentile/kl/mse, sees only the non-zero values; min/max and moments see all.
class TensorObserver {
 public:
  explicit TensorObserver(std::string name = "tensor", int bins = 2048, bool ignore_zeros = true);
  void observe_range(const float* x, int64_t n);  // Error once pass 2 has started
  void observe_hist(const float* x, int64_t n);   // the first call ends pass 1
  const MinMaxObserver& minmax() const { return minmax_; }
  const MomentsObserver& moments() const { return moments_; }
  const Histogram& histogram() const;             // Error when pass 2 has not run
  // max: [min, max]; 3sigma: [mean - 3 std, mean + 3 std] intersected with [min, max];
  // histogram calibrators: threshold T on |x|, range [max(min, -T), min(max, T)] ([T, T] or
  // [-T, -T] when every value lies beyond T on one side).
  // Error when a histogram calibrator is asked for before observe_hist.
  ClipRange calibrate(Calibrator c, const CalibOptions& opt = {}) const;

 private:
  std::string name_;
  int bins_;
  bool ignore_zeros_;
  MinMaxObserver minmax_;
  MomentsObserver moments_;
  std::optional<HistogramObserver> hist_;  // empty until pass 2 starts
};

// ---- KL helpers (seed 000 Q4, seed 002) ----

// KL(P||Q) = sum over P > 0 of P log(P / Q), natural log, after normalizing both to sum 1.
// +infinity when Q = 0 somewhere P > 0. Error for different lengths, negative or non-finite
// entries, or an all-zero P or Q.
double kl_divergence(const std::vector<double>& p, const std::vector<double>& q);
// The candidate Q of KL calibration: merge hist into k groups of len/k consecutive bins (the last
// group also takes the remainder), then spread each group's total uniformly over its bins that are
// non-zero in hist; empty bins stay empty. Error unless 1 <= k <= len.
std::vector<double> kl_merge_expand(const std::vector<double>& hist, int k);

// ---- ABC-Net (Lin et al. 2017; ALGORITHMS.md) ----

// W_bar = W - mean(W); u_i = -1 + (i-1) * 2/(M-1) (u = 0 when M = 1);
// B_i = sign(W_bar + u_i * std(W)) with sign(0) = +1 and population std;
// alphas = argmin ||W - sum alpha_i B_i||^2, solved from the M x M normal equations in double by a
// Cholesky factorization that skips bases linearly dependent on earlier ones (their alpha is 0).
struct AbcBases {
  int m = 0;
  int64_t n = 0;
  std::vector<float> u;        // m shifts
  std::vector<int8_t> bases;   // (m, n): bases[i * n + j] = B_i[j] in {-1, +1}
  std::vector<float> alphas;   // m
  std::vector<float> approx;   // n: sum_i alphas[i] * B_i
};
AbcBases abc_bases(const float* w, int64_t n, int m);  // Error unless 1 <= m <= 5 and n >= 1

}  // namespace lowbit
