// Weight and activation statistics of an FP32 model (seed 004, 2.1.2 and 2.3.2): min, max, mean,
// std, the 3-sigma range against the actual range, and histograms over [min, max]. Used by
// `lowbit stats` and by reports.
// Not here: printing (tools/lowbit/cmd_stats.cpp), calibration (quantizer.cpp uses TensorObserver).
#include <algorithm>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "lowbit/quantizer.h"

namespace lowbit {

namespace {

// Bin of x in [lo, hi] split into `bins`: the same double expression for every value, so counts
// depend only on the values, never on how they were batched.
struct Binner {
  float lo;
  double per_unit;  // bins / (hi - lo), 0 for a zero-width range
  int64_t last;
  Binner(float l, float h, int bins)
      : lo(l), per_unit(h > l ? bins / (static_cast<double>(h) - l) : 0.0), last(bins - 1) {}
  size_t operator()(float x) const {
    const int64_t k = static_cast<int64_t>((static_cast<double>(x) - lo) * per_unit);
    return static_cast<size_t>(std::clamp<int64_t>(k, 0, last));
  }
};

TensorStats stats_of(std::string name, std::string type, bool is_weight, Shape shape, const float* x, int64_t n,
                     int bins) {
  TensorStats t;
  t.name = std::move(name);
  t.layer_type = std::move(type);
  t.is_weight = is_weight;
  t.shape = std::move(shape);
  MinMaxObserver mm(t.name);
  MomentsObserver mo(t.name);
  mm.observe(x, n);
  mo.observe(x, n);
  t.count = mm.count();
  t.min = mm.min();
  t.max = mm.max();
  t.mean = mo.mean();
  t.std = mo.stddev();
  t.hist.lo = t.min;
  t.hist.hi = t.max;
  t.hist.counts.assign(static_cast<size_t>(bins), 0);
  Binner bin(t.min, t.max, bins);
  for (int64_t i = 0; i < n; ++i) ++t.hist.counts[bin(x[i])];
  return t;
}

nlohmann::json tensor_json(const TensorStats& t) {
  nlohmann::json edges = nlohmann::json::array();
  for (int i = 0; i <= static_cast<int>(t.hist.counts.size()); ++i) edges.push_back(t.hist.edge(i));
  return {{"name", t.name},
          {"layer_type", t.layer_type},
          {"shape", t.shape},
          {"count", t.count},
          {"min", t.min},
          {"max", t.max},
          {"mean", t.mean},
          {"std", t.std},
          {"range", {t.min, t.max}},
          {"range_width", static_cast<double>(t.max) - t.min},
          {"sigma3_range", {t.sigma3_lo(), t.sigma3_hi()}},
          {"sigma3_width", 6 * t.std},
          {"sigma3_larger", t.sigma3_larger()},
          {"histogram", {{"edges", edges}, {"counts", t.hist.counts}}}};
}

}  // namespace

ModelStats model_stats(Sequential& model, const Tensor& images, int bins, int batch) {
  if (bins < 1) throw Error(fmt::format("bins must be >= 1, got {}", bins));
  if (batch < 1) throw Error(fmt::format("batch must be >= 1, got {}", batch));
  if (images.rank() == 0 || images.dim(0) == 0) throw Error("stats: no images (need at least one)");
  Shape per(images.shape().begin() + 1, images.shape().end());
  if (per != model.input_shape)
    throw Error(fmt::format("images have shape {} per image, the model expects {}", shape_str(per),
                            shape_str(model.input_shape)));
  ModelStats s;
  s.samples = images.dim(0);
  s.bins = bins;

  for (size_t i = 0; i < model.size(); ++i)
    for (const Param& p : model.layer(i).params())
      s.weights.push_back(stats_of(model.name(i) + "." + p.name, model.layer(i).type(), true, p.value->shape(),
                                   p.value->data(), p.value->numel(), bins));

  // Activations: index 0 = the input, i + 1 = output of layer i. Pass 1: range and moments;
  // pass 2: histograms over that range. Same batches, same order.
  const size_t na = model.size() + 1;
  std::vector<MinMaxObserver> mm;
  std::vector<MomentsObserver> mo;
  for (size_t a = 0; a < na; ++a) {
    const std::string nm = a == 0 ? "input" : model.name(a - 1);
    mm.emplace_back(nm);
    mo.emplace_back(nm);
  }
  std::vector<std::vector<int64_t>> counts(na, std::vector<int64_t>(static_cast<size_t>(bins), 0));
  std::vector<Binner> binners;
  const int N = images.dim(0);
  const int64_t per_image = images.numel() / N;
  Tensor x;
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1)
      for (size_t a = 0; a < na; ++a) binners.emplace_back(mm[a].min(), mm[a].max(), bins);
    for (int b0 = 0; b0 < N; b0 += batch) {
      const int b1 = std::min(N, b0 + batch);
      Shape bs = images.shape();
      bs[0] = b1 - b0;
      x.resize(bs);
      std::memcpy(x.data(), images.data() + int64_t{b0} * per_image,
                  static_cast<size_t>(int64_t{b1 - b0} * per_image) * sizeof(float));
      model.forward(x);
      for (size_t a = 0; a < na; ++a) {
        const Tensor& t = model.activation(a);
        if (pass == 0) {
          mm[a].observe(t.data(), t.numel());
          mo[a].observe(t.data(), t.numel());
        } else {
          for (int64_t i = 0; i < t.numel(); ++i) ++counts[a][binners[a](t[i])];
        }
      }
    }
  }
  for (size_t a = 0; a < na; ++a) {
    TensorStats t;
    t.name = a == 0 ? "input" : model.name(a - 1);
    t.layer_type = a == 0 ? "Input" : model.layer(a - 1).type();
    const Shape& full = model.activation(a).shape();
    t.shape.assign(full.begin() + 1, full.end());
    t.count = mm[a].count();
    t.min = mm[a].min();
    t.max = mm[a].max();
    t.mean = mo[a].mean();
    t.std = mo[a].stddev();
    t.hist.lo = t.min;
    t.hist.hi = t.max;
    t.hist.counts = std::move(counts[a]);
    s.activations.push_back(std::move(t));
  }
  return s;
}

nlohmann::json stats_json(const ModelStats& s) {
  nlohmann::json w = nlohmann::json::array(), a = nlohmann::json::array();
  for (const TensorStats& t : s.weights) w.push_back(tensor_json(t));
  for (const TensorStats& t : s.activations) a.push_back(tensor_json(t));
  return {{"samples", s.samples}, {"bins", s.bins}, {"weights", w}, {"activations", a}};
}

}  // namespace lowbit
