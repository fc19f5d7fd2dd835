// The integer model: what the quantizer produces, what quantized model files hold, and what the
// integer-only engine runs. Between the input quantization and the final logits everything is
// integer: u8 activations (u = q + 128), int8 weights, int32 accumulators and biases, fixed-point
// (or another RequantVariant) requantization, fused ReLU by clamping, integer pooling.
// Not here: choosing scales (quant.h calibrators; engine/quantizer.cpp), kernels (src/kernels).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/ref/requant_ref.h"
#include "lowbit/core.h"
#include "lowbit/quant.h"

namespace lowbit {

enum class QOpKind { conv, linear, maxpool, avgpool, flatten };
const char* qop_kind_name(QOpKind k);

// One step of the integer network. conv and linear are "weighted" ops: out = requant(W x + b),
// optionally with a fused ReLU; the last weighted op instead writes its int32 accumulators, which
// become the float logits acc * s_w[c] * s_in.
struct QOp {
  QOpKind kind = QOpKind::conv;
  std::string name;
  // conv: in (N, in_ch, H, W) -> out (N, out_ch, OH, OW); linear: (N, in_ch) -> (N, out_ch).
  // pools: kernel x kernel windows with `stride`; flatten: nothing to compute (NCHW is contiguous).
  int in_ch = 0, out_ch = 0, kernel = 1, stride = 1, pad = 0;
  bool relu = false;
  int wbits = 8;
  bool per_channel = false;
  int abc_bases = 0;              // > 0: weights are ABC-Net sums of binary bases (informative)
  std::vector<int8_t> weight;     // (out_ch, K), K = in_ch * kernel * kernel (linear: in_ch)
  std::vector<int32_t> bias;      // (out_ch) in units of s_w[c] * s_in; empty = no bias
  std::vector<float> w_scale;     // (out_ch); equal entries when per-tensor
  QParams in, out;                // activation parameters (signed domain, see quant.h)
  // Requantization, per output channel, M = s_w * s_in / s_out (unused by the final op).
  std::vector<float> m;           // float variants
  std::vector<int32_t> q31, shift;  // fixedpoint variants
  std::vector<int32_t> divisor;   // divide variants
  int k() const { return kind == QOpKind::linear ? in_ch : in_ch * kernel * kernel; }
  bool weighted() const { return kind == QOpKind::conv || kind == QOpKind::linear; }
};

struct QModel {
  std::string architecture;
  Shape input_shape;  // per sample, e.g. {1, 32, 32}
  QParams input;      // quantization of the network input
  Rounding rounding = Rounding::Nearest;
  RequantVariant variant = RequantVariant::fixedpoint;
  std::vector<QOp> ops;
  nlohmann::json info;  // provenance: calibrators per tensor, bit widths, source model, notes
  // Wall-clock seconds of the calibration stages (quantize_model). Not saved: a model file holds
  // only what the same run reproduces bit for bit.
  nlohmann::json timing;
  int num_classes() const;
};

// Fills m, q31/shift and divisor of a weighted op from w_scale, in.scale and out.scale.
// Multipliers too small to represent (a dead channel) become the smallest representable one and
// are reported in `notes`.
void compute_requant(QOp& op, std::vector<std::string>* notes = nullptr);

// Parses "fixedpoint" | "float" | "divide" with a Rounding into a RequantVariant.
RequantVariant requant_variant(const std::string& name, Rounding r);

// Quantized model files: safetensors, metadata kind "quantized". The reader checks every shape,
// bit width, zero point, multiplier and shift, and that the ops chain; Error naming file and field.
void save_qmodel(const std::string& path, const QModel& q);
QModel load_qmodel(const std::string& path);
// The same checks on an already parsed file (messages name f.source); fuzz/fuzz_model.cpp.
QModel qmodel_from_safetensors(const struct SafetensorsFile& f);

// Runs a QModel with integer kernels. Threads take tiles of images; each tile runs the whole
// network with its activations in per-thread buffers. Deterministic: integer results do not
// depend on the thread count or the ISA.
class Engine {
 public:
  // kernels: the ISA's table to use (tests compare them); null = the dispatched one.
  explicit Engine(const QModel& q, const struct KernelTable* kernels = nullptr);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  // x: (N, input_shape...) floats -> logits (N, classes) floats.
  void run(const Tensor& x, Tensor& logits);
  // Integer activations of every op for a batch (u8, op outputs in order; the last is empty),
  // for analysis and tests. Single-threaded.
  std::vector<std::vector<uint8_t>> trace(const Tensor& x);
  int tile = 4;
  const char* isa() const;
  // How each op runs, e.g. "conv1: direct conv + max pool; conv2: implicit GEMM + max pool; ...":
  // which kernels the shapes and the ISA's table selected.
  std::string plan() const;
  struct Impl;  // opaque: prepared ops, kernel table, per-thread buffers

 private:
  std::unique_ptr<Impl> impl_;  // a unique_ptr, so a constructor that throws frees it
};

// Accuracy of the engine on a dataset-like pair (images (N, ...), labels).
double engine_accuracy(Engine& e, const Tensor& images, const std::vector<uint8_t>& labels, int batch = 256);

// The PTQ simulation in float: the FP32 network with weights, biases and activations replaced by
// quantize-then-dequantize under the same parameters (fake quantization). Its logits differ from
// the engine's only by float summation order and by how requantization rounds.
// stop_at >= 0: stop at op stop_at and return its output before the output quantization (the
// pre-activation; for the final op, the logits), for bias correction.
void simulate(const QModel& q, const Tensor& x, Tensor& logits, int stop_at = -1);

}  // namespace lowbit
