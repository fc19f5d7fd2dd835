// Post-training quantization: an FP32 Sequential plus calibration images -> the integer QModel the
// engine runs (engine.h), and the per-layer weight/activation statistics of `lowbit stats`.
// Not here: the quantization math (quant.h: QParams, observers, calibrators, ABC bases), running
// the integer model (engine.h), QAT, printing (tools/lowbit/cmd_quantize.cpp, cmd_stats.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lowbit/core.h"
#include "lowbit/engine.h"
#include "lowbit/nn.h"
#include "lowbit/quant.h"

namespace lowbit {

// ---- post-training quantization ----

// Weights are always symmetric (zero point 0) with the narrow range [-qmax, qmax] (int8: [-127,
// 127]), as TFLite's int8 specification: a zero weight zero point keeps sum_k w * (x - z_in) free of
// a z_w * sum_k x term, and the narrow range makes +-max|w| map to +-qmax exactly. act_scheme only
// applies to activations.
struct PtqConfig {
  Calibrator calibrator = Calibrator::Kl;         // activations after every conv/linear
  Calibrator input_calibrator = Calibrator::Max;  // the network input (KL clips raw images too hard)
  int wbits = 8, abits = 8;                       // 2..8
  bool per_channel = false;                       // one weight scale per output channel
  Scheme act_scheme = Scheme::Affine;
  Rounding rounding = Rounding::Nearest;          // of x / s everywhere, and of requantization
  std::string requant = "fixedpoint";             // fixedpoint | float | divide
  int abc_bases = 0;                              // > 0: ABC-Net approximation of the weights first
  double percentile = 99.99;                      // percentile calibrator, in (0, 100]
  int samples = 1000;                             // calibration images (the caller picks them)
  int calib_batch = 256;                          // images per FP32 forward during calibration
  // kl only: cap every histogram bin at the larger of its neighbours before the KL search, so that
  // point masses (the constant background's response) do not decide the threshold. false = the
  // plain TensorRT search on the zero-free histogram.
  bool kl_despike = true;
  // 3sigma only: mean and std of the non-zero values (the histogram calibrators also leave exact
  // zeros out). false = over all values, as seed 004 computes them (and `lowbit stats` prints).
  bool sigma_nonzero = true;
  // A weighted op followed (after its ReLU) by a 2x2 max pool is calibrated on the pool's output:
  // the engine stores only those maxima, in the op's scale (pooling the int32 accumulators and
  // then requantizing equals requantizing and then pooling), and the values the pool drops never
  // reach the next layer. It matters for 3sigma, whose moments the dropped small values pull
  // down (w8a8 per-tensor drop 0.13 -> 0.03 point, mean over ten LeNet-5 models on a held-out
  // split); the histogram calibrators move within noise. false = the op's own output, where
  // PyTorch's observers sit.
  bool observe_after_pool = true;
  // Weight scales: "max" = max|w| / qmax (TFLite's int8); "mse" = the clip among 0.50 .. 1.00 x
  // max|w| (steps of 0.01) with the least squared weight error, per channel when per_channel;
  // "auto" = mse below 8 bits, max at 8 (4-bit weights lost 1.4 points with max on one LeNet-5
  // and 0.9 with mse; at 8 bits the two are within noise).
  std::string weight_clip = "auto";
  // Empirical bias correction: per weighted op in order, the mean per output channel of the
  // quantized model's pre-activation minus the FP32 one over the calibration images is taken off
  // the int32 bias (the mean shift that weight rounding and activation clipping cause).
  // "on" | "off" | "auto" = on below 8 weight bits (one LeNet-5, w4a8 per channel: 88.85% ->
  // 89.35%; at w8a8 it moved the five calibrators by -0.4 .. +0.01 point: the clipping of 8-bit
  // activations is better left uncompensated).
  std::string bias_correction = "auto";
};

// Error naming the field when a value is out of range (bits outside 2..8, unknown requant name,
// abc_bases outside 0..5, percentile outside (0, 100], calib_batch < 1, weight_clip not
// auto|max|mse, bias_correction not auto|on|off).
void validate(const PtqConfig& cfg);

// Quantizes `fp32` (unchanged, apart from its cached activations) with the clip ranges calibrated
// on calib_images (N, input_shape...), N >= 1.
//  - Conv2d/Linear [+ ReLU] -> one weighted op, ReLU fused (its observed output is post-ReLU,
//    and post-pool when a max pool follows: observe_after_pool);
//    MaxPool2d/AvgPool2d with kernel 2, stride 2 -> pool op; Flatten -> flatten op; a trailing
//    Softmax is dropped (arg-max unchanged). Anything else (Sigmoid, Tanh, a lone ReLU, other
//    pools) is an Error naming the layer. The network must end with a weighted op without ReLU:
//    its int32 accumulators become the logits.
//  - Calibration: pass 1 observes min/max/moments of the network input and of every weighted op's
//    output over all batches, pass 2 (only for histogram calibrators) the histograms of |x| over
//    the range of pass 1. Thresholds do not depend on calib_batch or the thread count. kl and mse
//    count the levels the scheme really has: an affine tensor without negative values (after
//    ReLU) gets abits + 1 (capped at 8, the calibrators' limit). kl despikes (kl_despike);
//    3sigma uses the moments of the non-zero values (sigma_nonzero).
//  - Weights: symmetric wbits, per tensor or per output channel, scale by weight_clip, rounded
//    with cfg.rounding; bias
//    int32 in units of s_w[c] * s_in. A bias that does not fit the engine's int32 accumulator
//    widens the weight scale (of that channel when per-channel, else of the tensor), noted.
//  - compute_requant() fills every weighted op but the last.
// Notes for the user (dropped Softmax, widened scales, all-zero weights, ABC bits...) are appended
// to *notes when non-null and stored in q.info["notes"]. q.info also records the configuration,
// per tensor the calibrator, observed range and clip range, and calibration timings.
QModel quantize_model(Sequential& fp32, const Tensor& calib_images, const PtqConfig& cfg,
                      std::vector<std::string>* notes = nullptr);

// ---- statistics (lowbit stats; reused by reports) ----

// Histogram of signed values over [lo, hi] in equal bins: edge i = lo + i * (hi - lo) / bins;
// value x goes to bin floor((x - lo) / (hi - lo) * bins), x = hi to the last bin. A zero-width
// range (a constant tensor) puts every value in bin 0.
struct ValueHistogram {
  float lo = 0, hi = 0;
  std::vector<int64_t> counts;
  double edge(int i) const { return lo + (static_cast<double>(hi) - lo) * i / static_cast<double>(counts.size()); }
};

struct TensorStats {
  std::string name;        // "conv1.weight", "input", "act1" (the output of layer act1), ...
  std::string layer_type;  // type of the layer that holds or produces it ("Input" for the input)
  bool is_weight = false;
  Shape shape;             // weights: the tensor's shape; activations: per sample
  int64_t count = 0;       // values observed
  float min = 0, max = 0;
  double mean = 0, std = 0;  // population std
  // The 3-sigma range [mean - 3 std, mean + 3 std] and whether its width exceeds max - min
  // (seed 004, 2.1.2 / 2.3.2 compare the totals, i.e. the widths).
  double sigma3_lo() const { return mean - 3 * std; }
  double sigma3_hi() const { return mean + 3 * std; }
  bool sigma3_larger() const { return 6 * std > static_cast<double>(max) - min; }
  ValueHistogram hist;     // over [min, max]
};

struct ModelStats {
  int samples = 0;  // images the activations were observed on
  int bins = 0;
  std::vector<TensorStats> weights;      // every conv/linear weight (and bias), in layer order
  std::vector<TensorStats> activations;  // the network input, then every layer's output
};

// Two FP32 forward passes over `images` in batches of `batch` (range, then histograms), so the
// result does not depend on `batch`. Error for an empty image set, bins < 1 or batch < 1.
ModelStats model_stats(Sequential& model, const Tensor& images, int bins = 64, int batch = 256);
nlohmann::json stats_json(const ModelStats& s);

}  // namespace lowbit
