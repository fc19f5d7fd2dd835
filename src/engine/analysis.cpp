// SQNR / cosine per layer (engine vs FP32) and one-layer-at-a-time sensitivity.
#include "lowbit/analysis.h"

#include <cmath>
#include <limits>

#include "lowbit/train.h"

namespace lowbit {

namespace {

// Index of the FP32 activation an op's output stands for: after the layer, or after its fused ReLU.
size_t activation_index(Sequential& m, const QOp& op) {
  for (size_t i = 0; i < m.size(); ++i)
    if (m.name(i) == op.name) {
      if (op.weighted() && op.relu && i + 1 < m.size() && m.layer(i + 1).type() == "ReLU") return i + 2;
      return i + 1;
    }
  throw Error("quantized op " + op.name + " has no FP32 layer of that name");
}

LayerError compare(const std::string& name, const float* x, const std::vector<double>& xq) {
  double sig = 0, err = 0, dot = 0, nq = 0;
  for (size_t i = 0; i < xq.size(); ++i) {
    sig += double{x[i]} * x[i];
    err += (x[i] - xq[i]) * (x[i] - xq[i]);
    dot += x[i] * xq[i];
    nq += xq[i] * xq[i];
  }
  double sqnr = err > 0 ? 10 * std::log10(sig / err) : std::numeric_limits<double>::infinity();
  double cos = (sig > 0 && nq > 0) ? dot / std::sqrt(sig * nq) : (sig == nq ? 1.0 : 0.0);
  return {name, sqnr, cos};
}

// Fake-quantizes its input with fixed parameters (ReLU fused as a clamp at the zero point).
class OutputQuant : public Layer {
 public:
  OutputQuant(QParams p, bool relu, Rounding r) : p_(p), relu_(relu), r_(r) {}
  std::string type() const override { return "OutputQuant"; }
  Shape output_shape(const Shape& in) const override { return in; }
  void forward(const Tensor& in, Tensor& out, int n0, int n1) override {
    const int64_t per = in.numel() / in.dim(0);
    for (int64_t i = n0 * per; i < n1 * per; ++i) {
      int32_t q = quantize_value(in[i], p_, r_);
      out[i] = dequantize_value(relu_ ? std::max(q, p_.zero_point) : q, p_);
    }
  }
  void backward(const Tensor&, const Tensor&, const Tensor&, Tensor*, int, int, const std::vector<Tensor*>&) override {
    throw Error("OutputQuant is for evaluation only");
  }

 private:
  QParams p_;
  bool relu_;
  Rounding r_;
};

}  // namespace

std::vector<LayerError> layer_errors(Sequential& fp32, const QModel& q, const Tensor& images) {
  fp32.forward(images);
  Engine e(q);
  std::vector<std::vector<uint8_t>> trace = e.trace(images);
  Tensor logits;
  e.run(images, logits);
  std::vector<LayerError> out;
  const QParams* last_out = &q.input;
  for (size_t i = 0; i < q.ops.size(); ++i) {
    const QOp& op = q.ops[i];
    if (op.kind == QOpKind::flatten) continue;
    const Tensor& ref = fp32.activation(i + 1 == q.ops.size() ? fp32.logits_end() : activation_index(fp32, op));
    std::vector<double> deq;
    if (i + 1 == q.ops.size()) {
      for (int64_t j = 0; j < logits.numel(); ++j) deq.push_back(logits[j]);
    } else {
      const QParams& p = op.weighted() ? op.out : *last_out;
      for (uint8_t u : trace[i]) deq.push_back(double{p.scale} * (static_cast<int>(u) - 128 - p.zero_point));
    }
    if (static_cast<int64_t>(deq.size()) != ref.numel())
      throw Error("layer_errors: op " + op.name + " output size does not match the FP32 activation");
    out.push_back(compare(op.name, ref.data(), deq));
    if (op.weighted()) last_out = &op.out;
  }
  return out;
}

std::vector<LayerSensitivity> sensitivity(Sequential& fp32, const QModel& q, const Dataset& test) {
  std::vector<LayerSensitivity> out;
  for (size_t oi = 0; oi < q.ops.size(); ++oi) {
    const QOp& op = q.ops[oi];
    if (!op.weighted()) continue;
    Sequential m = clone_model(fp32);
    size_t li = 0;
    while (m.name(li) != op.name) ++li;
    auto params = m.layer(li).params();
    const int K = op.k();
    for (int c = 0; c < op.out_ch; ++c) {
      for (int j = 0; j < K; ++j)
        (*params[0].value)[int64_t{c} * K + j] = static_cast<float>(op.weight[size_t(c) * K + j]) * op.w_scale[size_t(c)];
      if (params.size() > 1)
        (*params[1].value)[c] = op.bias.empty() ? 0.0f : static_cast<float>(op.bias[size_t(c)]) * op.w_scale[size_t(c)] * op.in.scale;
    }
    bool final = oi + 1 == q.ops.size();
    if (!final) {  // rebuild with an output quantizer after the layer (and its ReLU)
      Sequential with;
      with.architecture = m.architecture;
      with.input_shape = m.input_shape;
      size_t after = activation_index(m, op);
      for (size_t i = 0; i < m.size(); ++i) {
        with.add(make_layer(m.layer(i).spec()), m.name(i));
        auto s = m.layer(i).params(), d = with.layer(i + (i >= after ? 1 : 0)).params();
        for (size_t j = 0; j < s.size(); ++j) *d[j].value = *s[j].value;
        if (i + 1 == after) with.add(std::make_unique<OutputQuant>(op.out, op.relu, q.rounding), op.name + ".quant");
      }
      m = std::move(with);
    }
    out.push_back({op.name, evaluate(m, test)});
  }
  return out;
}

nlohmann::json layer_errors_json(const std::vector<LayerError>& e) {
  nlohmann::json j = nlohmann::json::array();
  for (const LayerError& l : e)
    j.push_back({{"name", l.name}, {"sqnr_db", std::isfinite(l.sqnr_db) ? nlohmann::json(l.sqnr_db) : nlohmann::json(nullptr)},
                 {"cosine", l.cosine}});
  return j;
}

nlohmann::json sensitivity_json(const std::vector<LayerSensitivity>& s) {
  nlohmann::json j = nlohmann::json::array();
  for (const LayerSensitivity& l : s) j.push_back({{"name", l.name}, {"accuracy", l.accuracy}});
  return j;
}

}  // namespace lowbit
