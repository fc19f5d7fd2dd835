// Quantization-aware training (QAT): fake quantization in the FP32 training graph following the
// integer engine's rules (DESIGN.md section 3), straight-through estimators (identity, clipped,
// LSQ; ALGORITHMS.md "Straight-through estimators"), ABC-Net multi-bit binary weights in training,
// and the conversion of the fine-tuned network to the engine's QModel.
// Not here: the quantization math itself (quant.h), post-training quantization (quantizer.h: QAT
// starts from its calibration), the integer engine (engine.h), printing (tools/lowbit/cmd_qat.cpp).
//
// The training graph, for an engine-compatible Sequential (Conv2d/Linear [+ ReLU], 2x2 pooling,
// Flatten, no ReLU on the last weighted layer):
//   input -> FQ(input) -> conv1(FQ_w(W1), FQ_b(b1)) -> FQ_relu(conv1) -> pool -> ... -> fcN -> DQ -> logits
// (a ReLU is fused into the quantizer after it, as in the engine: clamp at the zero point)
// FQ(x) = s * (clamp(R(x / s) + z, qmin, qmax) - z) with the activation's per-tensor affine
// parameters and R the engine's rounding at that point (FakeQuantArgs: nearest-even at the input,
// the fixed-point requantization's double rounding after a layer); FQ_w uses symmetric
// narrow-range weights (z = 0, [-qmax, qmax]) per tensor or per output channel, recomputed from
// the float master weights every step; FQ_b rounds the bias to int32 units of s_w * s_in. The last layer's output is not requantized: DQ rounds it to the
// grid of the engine's int32 accumulators times s_w * s_in (the dequantize step at the output;
// identity backward), so that even exact ties between classes match the engine's.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lowbit/data.h"
#include "lowbit/engine.h"
#include "lowbit/nn.h"
#include "lowbit/quant.h"

namespace lowbit {

// ---- straight-through estimators over one fake quantizer ----

enum class Ste { Identity, Clipped, Lsq };
Ste parse_ste(const std::string& name);  // identity | clipped | lsq; Error names --ste and lists them
const char* ste_name(Ste s);

// One fake quantizer: x_hat = scale * (clamp(R(x / scale) + zero_point, qmin, qmax) - zero_point).
// R is the rounding the integer engine applies at that point of the network:
//   right < 0:  nearest, ties to even (quant_round's rule): the network input, which the engine
//               quantizes from floats, and the float requantization variant;
//   right >= 0: the engine's fixed-point requantization (TFLite; requant_ref.h) of a layer output
//               whose multiplier M = q31 * 2^(shift - 31) has right = max(-shift, 0): it rounds
//               twice, first acc * M to a multiple of 2^-right (srdhm, ties up), then to an integer
//               (rounding_divide_by_pot, ties away from zero). For v = acc * M that is exactly
//               R(v) = floor(v + 1/2 + e) for v >= 0 and floor(v + 1/2 - e) for v < 0, with
//               e = 2^-(right+1) when right >= 1 and e = 0 when right = 0: values within e below
//               a half round away from zero. Fake quantization sees v = x / scale in float, so it
//               reproduces the engine up to float noise near those thresholds.
// The clamp is applied to x / scale before rounding (the same thing, since R is monotone and the
// bounds are integers), so any float input, however large, is safe.
// relu: a ReLU fused in front of the quantizer, as the engine fuses it (lower clamp at qmin = z,
// which fake_quant_args sets): the forward's clamp is then the ReLU, and every backward also
// zeroes the gradient where x <= 0 (the ReLU's derivative).
// thresholds: with right >= 0, optional per-element thresholds e (thresholds[i] for element i of
// the run, fixedpoint_threshold(right_c) of its channel): per-channel weights give every output
// channel its own multiplier, hence its own right shift; a linear layer's (N, C) output changes
// channel at every element.
struct FakeQuantArgs {
  float scale = 1.0f;
  int32_t zero_point = 0;
  int32_t qmin = -128, qmax = 127;
  int32_t right = -1;
  bool relu = false;
  const float* thresholds = nullptr;
};
FakeQuantArgs fake_quant_args(const QParams& qp, int32_t right = -1, bool relu = false);
// e = 2^-(right+1) for right >= 1, 0 for right = 0.
float fixedpoint_threshold(int32_t right);

// Forward over n values: out[i] = x_hat(x[i]). out may alias x.
void fake_quant_forward(const float* x, int64_t n, const FakeQuantArgs& a, float* out);
// As fake_quant_forward, also returning the min and max of x (the observer's statistics).
void fake_quant_forward_minmax(const float* x, int64_t n, const FakeQuantArgs& a, float* out, float* xmin,
                               float* xmax);

// After 2x2 average pooling of fake-quantized values x = s (q - z): the engine averages the codes
// q of each window and rounds half away from zero; out = s (that code - z). Backward: identity.
void fake_quant_avgpool_round(const float* x, int64_t n, const FakeQuantArgs& a, float* out);

// Backward over n values, given x (the forward's input) and dy = dL/dx_hat; dx may alias dy.
//   identity: dx = dy everywhere (relu: where x > 0).
//   clipped:  dx = dy where qmin <= R(x / s) + z <= qmax (relu: and x > 0), 0 where the value was clamped.
//   lsq:      Esser et al. 2020, eq. 3, with a zero point: with v = x / s, L = qmin - z, U = qmax - z,
//             dx = dy where L < v < U, else 0; returns sum_i dy_i * d(x_hat_i)/ds with
//             d(x_hat)/ds = R(v) - v where L < v < U, L where v <= L, U where v >= U.
//             The caller multiplies the sum by the gradient scale.
void fake_quant_backward_identity(const float* x, const float* dy, int64_t n, const FakeQuantArgs& a, float* dx);
void fake_quant_backward_clipped(const float* x, const float* dy, int64_t n, const FakeQuantArgs& a, float* dx);
double fake_quant_backward_lsq(const float* x, const float* dy, int64_t n, const FakeQuantArgs& a, float* dx);
// LSQ's gradient scale g = 1 / sqrt(n * qmax): n = values per sample that one step size governs
// (activations: the tensor's elements per sample; weights: the weights sharing that scale).
float lsq_grad_scale(int64_t n, int32_t qmax);

// ---- QAT ----

struct QatConfig {
  int wbits = 8, abits = 8;  // 2..8; with abc_bases > 0 the weights are stored with 8 bits (wbits must be 8)
  // Activations: identity | clipped (default) | lsq (learned step per tensor, zero point kept from
  // calibration). Weights: max-based steps never clamp, so identity and clipped are the same STE
  // there; lsq learns the weight steps too (per tensor or channel), except with ABC-Net, whose
  // gradient passes straight through to the master weights.
  Ste ste = Ste::Clipped;
  int abc_bases = 0;         // 0 = off; 1..5: ABC-Net weights, W_hat = sum_i alpha_i B_i every step
  bool per_channel = false;  // one weight scale (and ABC-Net basis set) per output channel
  int epochs = 2;
  int batch = 64;
  float lr = 2e-3f;          // SGD, momentum below (PyTorch semantics, as train.h); measured for LeNet-5
  float momentum = 0.9f;
  float weight_decay = 0.0f;
  uint64_t seed = 1;         // batch order: the same as train() with this seed
  int samples = 1000;        // calibration images: the first `samples` training images
  Calibrator calibrator = Calibrator::Max;  // initial activation ranges (the network input always uses max)
  float ema_momentum = 0.99f;  // clipped/identity: range <- m * range + (1 - m) * batch min/max
  int loss_every = 20;       // loss_curve: the mean training loss of every `loss_every` steps
  std::string requant = "fixedpoint";  // of the exported model, emulated in training: fixedpoint | float
  bool progress = false;     // a progress line on stderr
};

// Error naming the CLI flag (--wbits, --abits, --abc-bases, --epochs, --lr, --batch, --samples,
// --momentum, --ema-momentum, --requant, --loss-every) when a value is out of range.
void validate(const QatConfig& cfg);

struct QatEpoch {
  int epoch = 0;
  double loss = 0;                 // mean training loss of the epoch
  double accuracy_fake_quant = 0;  // test accuracy of the fake-quantized network after the epoch
  double seconds = 0;              // training time of the epoch (evaluation and conversion excluded)
  double cpu_seconds = 0;          // CPU time of the same, all threads
};

struct QatResult {
  QModel qmodel;                   // the integer model of the last good epoch (valid when has_model)
  bool has_model = false;
  double fp32_accuracy = 0;        // the FP32 model given, before fine-tuning
  double ptq_accuracy = 0;         // engine accuracy of the starting point (quantize_model, cfg.calibrator)
  double accuracy = 0;             // engine accuracy of qmodel
  double accuracy_fake_quant = 0;  // fake-quantized network's accuracy at that epoch
  std::vector<QatEpoch> epochs;
  std::vector<double> loss_curve;  // mean loss of each window of loss_every steps
  int loss_every = 20;
  bool diverged = false;           // the loss (or a weight) became NaN/Inf: training stopped
  std::string diverged_message;    // where, and what was kept
  std::vector<std::string> notes;  // conversion notes (PTQ's, ABC-Net bit widths, ...)
  nlohmann::json to_json() const;  // accuracy, accuracy_fake_quant, fp32_accuracy, ptq_accuracy, loss_curve, epochs, ...
};

class QatNetwork;
// Called after every finished epoch with its figures and the network (to inspect or alter it).
using QatEpochCallback = std::function<void(const QatEpoch&, QatNetwork&)>;

// Fine-tunes `fp32` (taken over) with fake quantization for cfg.epochs on `train_set` and converts
// it to a QModel, evaluated on `test_set` by the Engine and by the fake-quantized network.
// Error (naming the layer) for a model the engine cannot run; Error for a bad config. A loss that
// becomes NaN/Inf does not throw: the result has diverged = true and the model of the last good
// epoch (has_model = false when the first epoch failed).
QatResult run_qat(Sequential fp32, const Dataset& train_set, const Dataset& test_set, const QatConfig& cfg,
                  const QatEpochCallback& on_epoch = {});

// The FP32 baseline of the same recipe: fine-tunes `fp32` in place with SGD (cfg.lr, momentum,
// weight decay, batch, seed, epochs), the batches in the same order and through the same loop as
// run_qat, so accuracies and epoch costs compare. Error when the loss becomes NaN/Inf.
struct FinetuneEpoch {
  int epoch = 0;
  double loss = 0, accuracy = 0;
  double seconds = 0, cpu_seconds = 0;  // training only, as QatEpoch
};
std::vector<FinetuneEpoch> finetune_fp32(Sequential& fp32, const Dataset& train_set, const Dataset& test_set,
                                         const QatConfig& cfg);

// ---- the pieces, for tests and analysis ----

// The fake-quantized training network built from an FP32 model, with the activation ranges
// calibrated by quantize_model. Owns the network; layers point into it.
class QatNetwork {
 public:
  QatNetwork(Sequential fp32, const Tensor& calib_images, const QatConfig& cfg);
  ~QatNetwork();
  QatNetwork(const QatNetwork&) = delete;
  QatNetwork& operator=(const QatNetwork&) = delete;

  Sequential& net();                 // the training graph (fake-quant layers inserted)
  const QModel& initial() const;     // the PTQ starting point
  // Recomputes the fake-quantized weights and biases and every quantizer's parameters from the
  // master weights, the ranges and the learned step sizes. Returns false (nothing changed) when
  // a weight, bias, range or step size is not finite.
  bool prepare();
  // Forward in training mode (quantizers gather batch min/max), for x (N, input...).
  const Tensor& forward_train(const Tensor& x);
  // After net().backward(): the weight STE (clip mask, LSQ step-size gradients).
  void finish_backward();
  // After the optimizer step: moving-average ranges from this batch's min/max.
  void update_ranges();
  // The integer model of the current state (call prepare() first).
  QModel to_qmodel(std::vector<std::string>* notes = nullptr) const;
  struct Impl;

 private:
  Impl* impl_;
};

}  // namespace lowbit
