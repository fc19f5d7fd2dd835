// FP32 layers with hand-written backward passes, and the Sequential model that chains them.
// Layout: activations are NCHW (or (N, features) after Flatten); weights are (OC, C, KH, KW) for
// convolutions and (out, in) for linear layers, as in PyTorch, so shapes read the same.
// Not here: training loops, optimizers (train.h), quantization (quant.h).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lowbit/core.h"

namespace lowbit {

struct Param {
  std::string name;  // e.g. "weight", "bias"
  Tensor* value;
  Tensor* grad;
};

// Every layer treats samples independently, so Sequential runs the network on tiles of a few
// samples at a time (activations of a tile stay in L2) and threads take whole tiles. A layer's
// forward/backward process samples [n0, n1) of full-batch tensors and are single-threaded.
class Layer {
 public:
  virtual ~Layer() = default;
  virtual std::string type() const = 0;
  // Output shape for an input shape (batch dimension included); throws Error when they do not fit.
  virtual Shape output_shape(const Shape& in) const = 0;
  // out[n0, n1) = f(in[n0, n1)); `out` already has shape output_shape(in.shape()).
  virtual void forward(const Tensor& in, Tensor& out, int n0, int n1) = 0;
  // Given dL/dout for samples [n0, n1): accumulates (+=) parameter gradients into `grads` (one
  // tensor per params() entry, same order) and writes dL/din[n0, n1) when din != nullptr.
  // `in` and `out` are the tensors of the matching forward call. Empty `grads` (only where
  // grad_rows(in) > 0): dL/din alone.
  virtual void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* din, int n0, int n1,
                        const std::vector<Tensor*>& grads) = 0;
  // A layer whose parameter gradients are one GEMM over the batch (Linear; a convolution whose
  // kernel covers its input) may also compute them by rows of output units: grad_rows(in) > 0
  // rows, and grads_by_rows() gives rows [o0, o1) of every parameter's gradient summed over all
  // samples, added to `grads` (accumulate) or replacing them. Sequential splits these rows across
  // threads instead of summing per-thread partial gradients: for LeNet's conv3 and fc1, whose
  // weights outweigh their activations, that moves and adds far fewer floats.
  virtual int grad_rows(const Shape& /*in*/) const { return 0; }
  virtual void grads_by_rows(const Tensor& /*in*/, const Tensor& /*dout*/, int /*o0*/, int /*o1*/,
                             const std::vector<Tensor*>& /*grads*/, bool /*accumulate*/) {}
  virtual std::vector<Param> params() { return {}; }
  // Multiply-adds per sample for a per-sample input shape (no batch dimension).
  virtual int64_t macs(const Shape& /*in*/) const { return 0; }
  virtual std::string kernel_str() const { return "--"; }
  // Hyperparameters as JSON ({"type": ..., ...}); make_layer() rebuilds the layer from it.
  virtual nlohmann::json spec() const { return {{"type", type()}}; }
  // Initializes parameters (PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
  virtual void init(Rng& /*rng*/) {}

  // Sequential::forward calls freeze() before it runs its tiles and thaw() after: in between the
  // parameters do not change, so a layer may use data derived from them (Linear and Conv2d keep
  // their weights transposed for the GEMM). Forward calls outside that bracket never use it.
  virtual void freeze() {}
  virtual void thaw() {}

  // Whole-batch conveniences (single-threaded), for tests and tools.
  void forward(const Tensor& in, Tensor& out) { forward(in, out, 0, in.dim(0)); }
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* din);
};

// W^T of a weight matrix W[O][K] as [K][O] rows for the row-pointer GEMM (y = x W^T with x read
// in place, nothing packed per call): built by freeze(), used only while frozen.
struct FrozenWeights {
  std::vector<float> src;           // the W it was built from
  std::vector<float> wt;            // [K][O], then zero slack for the GEMM's whole-tile loads
  std::vector<const float*> rows;   // K pointers into wt
  bool valid = false;
  void build(const Tensor& w, int o, int k);
  // y[t][O] = x[t][K] * W^T (+ bias when non-null); x rows K floats apart, y rows O apart.
  void apply(const float* x, int t, int o, int k, const float* bias, float* y) const;
};

class Conv2d : public Layer {
 public:
  Conv2d(int in_ch, int out_ch, int kernel, int stride = 1, int pad = 0, bool bias = false);
  std::string type() const override { return "Conv2d"; }
  Shape output_shape(const Shape& in) const override;
  using Layer::backward;
  using Layer::forward;
  void forward(const Tensor& in, Tensor& out, int n0, int n1) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* din, int n0, int n1,
                const std::vector<Tensor*>& grads) override;
  int grad_rows(const Shape& in) const override;
  void grads_by_rows(const Tensor& in, const Tensor& dout, int o0, int o1, const std::vector<Tensor*>& grads,
                     bool accumulate) override;
  std::vector<Param> params() override;
  int64_t macs(const Shape& in) const override;
  std::string kernel_str() const override;
  nlohmann::json spec() const override;
  void init(Rng& rng) override;
  // Sequential's fusion of conv -> ReLU -> 2x2/2 max pool: writes the three layers' outputs as
  // they would (same values), reading the GEMM result once. Only where fuses_relu_maxpool(in):
  // stride 1 with more than one output pixel. With `win` (N x OC x OH/2 x OW/2 bytes), for
  // training: only pool_out and each window's winning position (BiasReluMaxpoolWinFn) are written.
  bool fuses_relu_maxpool(const Shape& in) const;
  void forward_relu_maxpool(const Tensor& in, Tensor& conv_out, Tensor& relu_out, Tensor& pool_out, int n0, int n1,
                            uint8_t* win = nullptr);
  // Its backward with `win`, through the pool, the ReLU and this layer: from dq, the pool output's
  // gradient, to din and the parameter gradients, as backward() after the pair's. dy (the conv
  // output's shape) is scratch. Only this layer knows how it laid out `win`.
  void backward_relu_maxpool(const Tensor& in, const uint8_t* win, const Tensor& dq, Tensor& dy, Tensor* din, int n0,
                             int n1, const std::vector<Tensor*>& grads);
  void freeze() override { frozen_.build(weight, out_ch, in_ch * kernel * kernel); }
  void thaw() override { frozen_.valid = false; }

  int in_ch, out_ch, kernel, stride, pad;
  bool has_bias;
  Tensor weight, bias, dweight, dbias;  // (OC, C, K, K), (OC)

 private:
  void forward_rows(const Tensor& in, Tensor& out, int n0, int n1);  // stride 1, no im2col
  void backward_lanes(const Tensor& in, float* dyl, Tensor* din, int b0, int nb, const std::vector<Tensor*>& grads);
  FrozenWeights frozen_;
};

class Linear : public Layer {
 public:
  Linear(int in_features, int out_features, bool bias = false);
  std::string type() const override { return "Linear"; }
  Shape output_shape(const Shape& in) const override;
  using Layer::backward;
  using Layer::forward;
  void forward(const Tensor& in, Tensor& out, int n0, int n1) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* din, int n0, int n1,
                const std::vector<Tensor*>& grads) override;
  int grad_rows(const Shape& /*in*/) const override { return out_f; }
  void grads_by_rows(const Tensor& in, const Tensor& dout, int o0, int o1, const std::vector<Tensor*>& grads,
                     bool accumulate) override;
  std::vector<Param> params() override;
  int64_t macs(const Shape& in) const override { (void)in; return int64_t{in_f} * out_f; }
  nlohmann::json spec() const override;
  void init(Rng& rng) override;
  void freeze() override { frozen_.build(weight, out_f, in_f); }
  void thaw() override { frozen_.valid = false; }

  int in_f, out_f;
  bool has_bias;
  Tensor weight, bias, dweight, dbias;  // (out, in), (out)

 private:
  FrozenWeights frozen_;
};

enum class ActKind { relu, sigmoid, tanh };
class Activation : public Layer {
 public:
  explicit Activation(ActKind k) : kind(k) {}
  std::string type() const override;
  Shape output_shape(const Shape& in) const override { return in; }
  using Layer::backward;
  using Layer::forward;
  void forward(const Tensor& in, Tensor& out, int n0, int n1) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* din, int n0, int n1,
                const std::vector<Tensor*>& grads) override;
  ActKind kind;
};

enum class PoolKind { max, avg };
class Pool2d : public Layer {
 public:
  Pool2d(PoolKind k, int kernel_size, int stride_size) : kind(k), kernel(kernel_size), stride(stride_size) {}
  std::string type() const override { return kind == PoolKind::max ? "MaxPool2d" : "AvgPool2d"; }
  Shape output_shape(const Shape& in) const override;
  using Layer::backward;
  using Layer::forward;
  void forward(const Tensor& in, Tensor& out, int n0, int n1) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* din, int n0, int n1,
                const std::vector<Tensor*>& grads) override;
  std::string kernel_str() const override;
  nlohmann::json spec() const override;
  PoolKind kind;
  int kernel, stride;
};

class Flatten : public Layer {
 public:
  std::string type() const override { return "Flatten"; }
  Shape output_shape(const Shape& in) const override;
  using Layer::backward;
  using Layer::forward;
  void forward(const Tensor& in, Tensor& out, int n0, int n1) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* din, int n0, int n1,
                const std::vector<Tensor*>& grads) override;
};

// Softmax at the output; during training the loss fuses it (softmax_cross_entropy), so forward is
// only used for reporting probabilities. Backward is the full softmax Jacobian-vector product.
class Softmax : public Layer {
 public:
  std::string type() const override { return "Softmax"; }
  Shape output_shape(const Shape& in) const override { return in; }
  using Layer::backward;
  using Layer::forward;
  void forward(const Tensor& in, Tensor& out, int n0, int n1) override;
  void backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* din, int n0, int n1,
                const std::vector<Tensor*>& grads) override;
};

std::unique_ptr<Layer> make_layer(const nlohmann::json& spec);

class Sequential {
 public:
  Sequential() = default;
  Sequential(Sequential&&) = default;
  Sequential& operator=(Sequential&&) = default;
  void add(std::unique_ptr<Layer> layer, std::string name);
  // Runs every layer, keeping activations for backward. Returns the last output.
  // Threads take tiles of `tile` samples and run the whole network on each.
  // Keep::backward (training): a fused conv -> ReLU -> max pool keeps only the pool's output and
  // its windows' winning positions, which is all backward() needs; activation() of that conv
  // and ReLU is then stale.
  // With freeze, layers may first rebuild transposed copies of their weights (FrozenWeights), a
  // gain when one set of weights serves many calls (inference), a cost when it changes every
  // step (training): Keep::all freezes, Keep::backward does not, unless told otherwise.
  enum class Keep { all, backward };
  const Tensor& forward(const Tensor& input, Keep keep = Keep::all) { return forward(input, keep, keep == Keep::all); }
  const Tensor& forward(const Tensor& input, Keep keep, bool freeze);
  int tile = 16;
  // Backpropagates dL/d(output of layer `end`-1) through layers [0, end); adds the parameter
  // gradients to what they hold (accumulate), or replaces it (the same bits as zero_grad() first,
  // without its serial pass). Gradients below the first layer with
  // parameters (the input gradient among them) are not computed: nothing consumes them.
  void backward(const Tensor& dout, size_t end, bool accumulate = true);
  // Number of layers up to the logits: a trailing Softmax is excluded (the loss fuses it).
  size_t logits_end() const;
  void zero_grad();
  void init(uint64_t seed);
  int64_t num_params();
  Shape output_shape(const Shape& in) const;  // checks every layer chains

  size_t size() const { return layers_.size(); }
  Layer& layer(size_t i) { return *layers_[i]; }
  const Layer& layer(size_t i) const { return *layers_[i]; }
  const std::string& name(size_t i) const { return names_[i]; }
  const Tensor& activation(size_t i) const { return acts_[i]; }  // 0 = input, i+1 = output of layer i

  std::string architecture;   // builder name, e.g. "lenet5"
  Shape input_shape;          // per-sample, e.g. {1, 32, 32}

 private:
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<std::string> names_;
  std::vector<Tensor> acts_, grads_;
  std::vector<std::vector<uint8_t>> wins_;  // [ReLU layer]: winning positions from Keep::backward, else empty
  std::vector<std::vector<Tensor>> thread_grads_;  // [thread][parameter], summed in thread order
};

// A copy of a model: architecture and parameters (gradients and activations are not copied).
Sequential clone_model(Sequential& m);

// Builders. "lenet5": seed 004 (ReLU, max pooling, no bias unless `bias`), 61,470 parameters.
// "lenet5-classic": sigmoid, average pooling, softmax output.
Sequential build_model(const std::string& name, bool bias);
std::vector<std::string> model_names();

// Softmax cross-entropy, mean over the batch. logits (N, C); labels N values in [0, C).
// Writes dL/dlogits = (softmax - onehot) / N into dlogits when non-null. Returns the mean loss.
double softmax_cross_entropy(const Tensor& logits, const uint8_t* labels, Tensor* dlogits);

}  // namespace lowbit

namespace lowbit {
// FP32 model files (safetensors layout, DESIGN.md section 4). Metadata: {"kind": "fp32",
// "architecture", "input_shape", "layers": [{"name", "spec"}], "extra": caller's JSON}; tensors
// "<layer>.weight" and "<layer>.bias". Written atomically. Loading rebuilds the layers from their
// specs and checks every tensor's dtype, shape and values (NaN/Inf rejected).
void save_model(const std::string& path, Sequential& model, const nlohmann::json& extra = {});
Sequential load_model(const std::string& path);
// The same checks on an already parsed file (messages name f.source); fuzz/fuzz_model.cpp.
Sequential model_from_safetensors(const struct SafetensorsFile& f);
// "fp32" or "quantized" (or Error when the file is not a lowbit model), without building it.
std::string model_kind(const std::string& path);
}  // namespace lowbit

namespace lowbit {
// A torchinfo-style model summary (seed 004, section 1.3.1).
struct SummaryRow {
  std::string name, type, kernel;
  Shape input, output;  // with batch dimension 1
  int64_t params, macs;
};
struct Summary {
  std::vector<SummaryRow> rows;
  int64_t total_params = 0, total_macs = 0;
  double input_mb = 0, activations_mb = 0, params_mb = 0, total_mb = 0;
};
Summary summarize(Sequential& model);
std::string format_summary(const Summary& s);
nlohmann::json summary_json(const Summary& s);
// 61470 -> "61,470"
std::string with_commas(int64_t v);
}  // namespace lowbit
