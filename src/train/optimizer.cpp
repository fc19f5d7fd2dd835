// SGD with momentum / weight decay and Adam, with PyTorch's update rules.
#include <cmath>

#include "lowbit/train.h"
#include "nn/parallel.h"

namespace lowbit {

Optimizer::Optimizer(Sequential& model, OptimConfig cfg) : cfg_(std::move(cfg)) {
  if (cfg_.optimizer != "sgd" && cfg_.optimizer != "adam")
    throw Error("--optimizer must be sgd or adam, got \"" + cfg_.optimizer + "\"");
  for (size_t i = 0; i < model.size(); ++i)
    for (Param& p : model.layer(i).params()) params_.push_back(p);
  for (const Param& p : params_) {
    m_.emplace_back(p.value->shape());
    if (cfg_.optimizer == "adam") v_.emplace_back(p.value->shape());
  }
}

std::vector<Tensor*> Optimizer::state() {
  std::vector<Tensor*> s;
  for (Tensor& t : m_) s.push_back(&t);
  for (Tensor& t : v_) s.push_back(&t);
  return s;
}

// Element-wise updates: threads take slices of every parameter (the same bits on any count).
void Optimizer::step() {
  ++steps;
  const float lr = cfg_.lr, wd = cfg_.weight_decay;
  const bool sgd = cfg_.optimizer == "sgd";
  const float mu = cfg_.momentum, b1 = cfg_.beta1, b2 = cfg_.beta2;
  const float c1 = 1.0f - std::pow(b1, static_cast<float>(steps));
  const float c2 = 1.0f - std::pow(b2, static_cast<float>(steps));
  run_threads(threads(), [&](int th, int nth) {
    for (size_t i = 0; i < params_.size(); ++i) {
      float* __restrict w = params_[i].value->data();
      const float* __restrict g = params_[i].grad->data();
      float* __restrict m = m_[i].data();
      const Slice s = thread_slice(static_cast<int>(params_[i].value->numel()), th, nth);
      if (sgd) {
        const float keep = steps == 1 ? 0.0f : mu;  // PyTorch: the first step sets the velocity v = g
        for (int j = s.begin; j < s.end; ++j) {
          m[j] = keep * m[j] + (g[j] + wd * w[j]);
          w[j] -= lr * m[j];
        }
        continue;
      }
      float* __restrict v = v_[i].data();
      for (int j = s.begin; j < s.end; ++j) {
        float d = g[j] + wd * w[j];
        m[j] = b1 * m[j] + (1.0f - b1) * d;
        v[j] = b2 * v[j] + (1.0f - b2) * d * d;
        w[j] -= lr * (m[j] / c1) / (std::sqrt(v[j] / c2) + cfg_.eps);
      }
    }
  });
}

}  // namespace lowbit
