// Sequential model, layer factory and the model builders (LeNet-5 variants of seed 004).

#include <algorithm>

#include "kernels/dispatch.h"
#include "lowbit/nn.h"
#include "nn/parallel.h"

namespace lowbit {

void Sequential::add(std::unique_ptr<Layer> layer, std::string name) {
  layers_.push_back(std::move(layer));
  names_.push_back(std::move(name));
}

Shape Sequential::output_shape(const Shape& in) const {
  Shape s = in;
  for (size_t i = 0; i < layers_.size(); ++i) {
    try {
      s = layers_[i]->output_shape(s);
    } catch (const Error& e) {
      throw Error("layer " + names_[i] + ": " + e.what());
    }
  }
  return s;
}

// Tiles [t * tile, (t + 1) * tile) of the batch; thread i of T takes a contiguous run of tiles
// (thread_slice), so what each thread sums, and in which order, depends only on (batch, T).
const Tensor& Sequential::forward(const Tensor& input, Keep keep, bool freeze) {
  acts_.resize(layers_.size() + 1);
  acts_[0] = input;
  for (size_t i = 0; i < layers_.size(); ++i) acts_[i + 1].resize(layers_[i]->output_shape(acts_[i].shape()));
  const int N = input.dim(0), tiles = (N + tile - 1) / tile;
  // Conv2d -> ReLU -> MaxPool2d(2, 2) runs as one pass over the convolution's result.
  std::vector<bool> fused(layers_.size(), false);
  for (size_t i = 0; i + 2 < layers_.size(); ++i) {
    const auto* act = dynamic_cast<const Activation*>(layers_[i + 1].get());
    const auto* pool = dynamic_cast<const Pool2d*>(layers_[i + 2].get());
    const auto* conv = dynamic_cast<const Conv2d*>(layers_[i].get());
    fused[i] = conv && act && act->kind == ActKind::relu && pool && pool->kind == PoolKind::max && pool->kernel == 2 &&
               pool->stride == 2 && conv->fuses_relu_maxpool(acts_[i].shape());
  }
  wins_.resize(layers_.size());
  for (auto& w : wins_) w.clear();  // keeps the capacity: training allocates nothing per step
  if (keep == Keep::backward)
    for (size_t i = 0; i < layers_.size(); ++i)
      if (fused[i]) wins_[i + 1].resize(static_cast<size_t>(acts_[i + 3].numel()));
  if (freeze)
    for (auto& l : layers_) l->freeze();
  run_threads(std::max(1, std::min(threads(), tiles)), [&](int th, int nth) {
    Slice s = thread_slice(tiles, th, nth);
    for (int t = s.begin; t < s.end; ++t) {
      int n0 = t * tile, n1 = std::min(N, n0 + tile);
      for (size_t i = 0; i < layers_.size(); ++i) {
        if (fused[i]) {
          static_cast<Conv2d&>(*layers_[i])
              .forward_relu_maxpool(acts_[i], acts_[i + 1], acts_[i + 2], acts_[i + 3], n0, n1,
                                    wins_[i + 1].empty() ? nullptr : wins_[i + 1].data());
          i += 2;
          continue;
        }
        layers_[i]->forward(acts_[i], acts_[i + 1], n0, n1);
      }
    }
  });
  for (auto& l : layers_) l->thaw();
  return acts_.back();
}

size_t Sequential::logits_end() const {
  size_t n = layers_.size();
  return (n > 0 && layers_[n - 1]->type() == "Softmax") ? n - 1 : n;
}

void Sequential::backward(const Tensor& dout, size_t end, bool accumulate) {
  grads_.resize(layers_.size() + 1);
  grads_[end] = dout;
  for (size_t i = 1; i < end; ++i) grads_[i].resize(acts_[i].shape());
  const int N = dout.dim(0), tiles = (N + tile - 1) / tile;
  const int nthreads = std::max(1, std::min(threads(), tiles));
  // Layers with grad_rows(): their parameter gradients come after the tiles, by rows, over the
  // whole batch (by_rows: layer -> its gradients). The others': per-thread partial gradients
  // ([thread][layer] -> one tensor per parameter, zeroed by their thread), summed after the tiles.
  thread_grads_.resize(static_cast<size_t>(nthreads));
  std::vector<std::vector<std::vector<Tensor*>>> views(static_cast<size_t>(nthreads), std::vector<std::vector<Tensor*>>(end));
  std::vector<std::pair<size_t, std::vector<Tensor*>>> by_rows;
  std::vector<Param> params;  // the others', in layer order, as the views
  for (size_t i = 0; i < end; ++i) {
    std::vector<Param> ps = layers_[i]->params();
    if (!ps.empty() && layers_[i]->grad_rows(acts_[i].shape()) > 0) {
      by_rows.emplace_back(i, std::vector<Tensor*>{});
      for (Param& p : ps) by_rows.back().second.push_back(p.grad);
      continue;
    }
    for (Param& p : ps) {
      for (int th = 0; th < nthreads; ++th) views[static_cast<size_t>(th)][i].push_back(nullptr);
      params.push_back(p);
    }
  }
  for (int th = 0; th < nthreads; ++th) {
    auto& store = thread_grads_[static_cast<size_t>(th)];
    store.resize(params.size());
    size_t k = 0;
    for (size_t i = 0; i < end; ++i)
      for (Tensor*& view : views[static_cast<size_t>(th)][i]) {
        store[k].resize(params[k].value->shape());
        view = &store[k++];
      }
  }
  // ReLU -> MaxPool2d(2, 2): one pass from the pool's output gradient to the ReLU's input
  // gradient (the pool's input gradient, mostly zeros, is never written).
  std::vector<bool> fused(end, false);
  for (size_t i = 1; i < end; ++i) {
    const auto* act = dynamic_cast<const Activation*>(layers_[i - 1].get());
    const auto* pool = dynamic_cast<const Pool2d*>(layers_[i].get());
    fused[i] = act && act->kind == ActKind::relu && pool && pool->kind == PoolKind::max && pool->kernel == 2 &&
               pool->stride == 2 && acts_[i].rank() == 4;
  }
  // Layers below the first with parameters need no gradient (in QAT, the input's quantizer; in
  // LeNet, conv1's input gradient).
  size_t first = 0;
  while (first < end && layers_[first]->params().empty()) ++first;
  const ReluMaxpoolBackwardFn relu_maxpool_backward = kernels().relu_maxpool_backward_f32;
  run_threads(nthreads, [&](int th, int nth) {
    for (Tensor& g : thread_grads_[static_cast<size_t>(th)]) g.zero();
    Slice s = thread_slice(tiles, th, nth);
    for (int t = s.begin; t < s.end; ++t) {
      int n0 = t * tile, n1 = std::min(N, n0 + tile);
      for (size_t i = end; i-- > first;) {
        if (fused[i]) {  // layer i - 1 is the ReLU, i the pool
          const Tensor &y = acts_[i - 1], &r = acts_[i], &dq = grads_[i + 1];
          const int C = r.dim(1), H = r.dim(2), W = r.dim(3);
          const int64_t plane = int64_t{H} * W, pooled = int64_t{H / 2} * (W / 2);
          if (i - 1 < wins_.size() && !wins_[i - 1].empty()) {
            // Keep::backward fused conv i - 2 with the pair and kept only the windows' winners: the
            // conv takes all three (it alone knows how it laid them out).
            static_cast<Conv2d&>(*layers_[i - 2])
                .backward_relu_maxpool(acts_[i - 2], wins_[i - 1].data(), dq, grads_[i - 1],
                                       i - 2 > first ? &grads_[i - 2] : nullptr, n0, n1, views[static_cast<size_t>(th)][i - 2]);
            i -= 2;
            continue;
          }
          if (i - 1 > first)
            for (int64_t pl = int64_t{n0} * C; pl < int64_t{n1} * C; ++pl)
              relu_maxpool_backward(y.data() + pl * plane, r.data() + pl * plane, dq.data() + pl * pooled, H, W,
                                    grads_[i - 1].data() + pl * plane);
          --i;
          continue;
        }
        layers_[i]->backward(acts_[i], acts_[i + 1], grads_[i + 1], i > first ? &grads_[i] : nullptr, n0, n1,
                             views[static_cast<size_t>(th)][i]);
      }
    }
  });
  // grad (or 0) + the threads' parts in thread order, element by element (the same sums on any
  // thread count running this loop); threads take slices of each parameter, and of the rows of
  // the by-rows layers.
  run_threads(nthreads, [&](int th, int nth) {
    for (auto& [i, grads] : by_rows) {
      const Slice s = thread_slice(layers_[i]->grad_rows(acts_[i].shape()), th, nth);
      layers_[i]->grads_by_rows(acts_[i], grads_[i + 1], s.begin, s.end, grads, accumulate);
    }
    for (size_t k = 0; k < params.size(); ++k) {
      float* g = params[k].grad->data();
      const Slice s = thread_slice(static_cast<int>(params[k].grad->numel()), th, nth);
      if (!accumulate) std::fill(g + s.begin, g + s.end, 0.0f);
      for (int part = 0; part < nthreads; ++part) {
        const float* src = thread_grads_[static_cast<size_t>(part)][k].data();
        for (int e = s.begin; e < s.end; ++e) g[e] += src[e];
      }
    }
  });
}

void Layer::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* din) {
  std::vector<Tensor*> grads;
  for (Param& p : params()) grads.push_back(p.grad);
  backward(in, out, dout, din, 0, in.dim(0), grads);
}

void Sequential::zero_grad() {
  for (auto& l : layers_)
    for (Param& p : l->params()) p.grad->zero();
}

void Sequential::init(uint64_t seed) {
  Rng rng(seed);
  for (auto& l : layers_) l->init(rng);
}

int64_t Sequential::num_params() {
  int64_t n = 0;
  for (auto& l : layers_)
    for (Param& p : l->params()) n += p.value->numel();
  return n;
}

static int spec_int(const nlohmann::json& j, const char* key, int dflt = -1) {
  if (!j.contains(key)) {
    if (dflt >= 0) return dflt;
    throw Error(std::string("layer spec ") + j.dump() + " lacks \"" + key + "\"");
  }
  if (!j[key].is_number_integer()) throw Error(std::string("layer spec field \"") + key + "\" must be an integer");
  int64_t v = j[key].get<int64_t>();
  if (v < 0 || v > 1 << 20) throw Error(std::string("layer spec field \"") + key + "\" out of range: " + std::to_string(v));
  return static_cast<int>(v);
}

std::unique_ptr<Layer> make_layer(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    throw Error("layer spec must be an object with a string \"type\"");
  const std::string t = j["type"].get<std::string>();
  bool bias = j.contains("bias") && j["bias"].is_boolean() && j["bias"].get<bool>();
  if (t == "Conv2d")
    return std::make_unique<Conv2d>(spec_int(j, "in"), spec_int(j, "out"), spec_int(j, "kernel"),
                                    spec_int(j, "stride", 1), spec_int(j, "pad", 0), bias);
  if (t == "Linear") return std::make_unique<Linear>(spec_int(j, "in"), spec_int(j, "out"), bias);
  if (t == "ReLU") return std::make_unique<Activation>(ActKind::relu);
  if (t == "Sigmoid") return std::make_unique<Activation>(ActKind::sigmoid);
  if (t == "Tanh") return std::make_unique<Activation>(ActKind::tanh);
  if (t == "MaxPool2d" || t == "AvgPool2d") {
    int k = spec_int(j, "kernel");
    if (k <= 0) throw Error("pooling kernel must be positive");
    int s = spec_int(j, "stride", k);
    if (s <= 0) throw Error("pooling stride must be positive");
    return std::make_unique<Pool2d>(t == "MaxPool2d" ? PoolKind::max : PoolKind::avg, k, s);
  }
  if (t == "Flatten") return std::make_unique<Flatten>();
  if (t == "Softmax") return std::make_unique<Softmax>();
  throw Error("unknown layer type \"" + t + "\"");
}

Sequential clone_model(Sequential& m) {
  Sequential c;
  c.architecture = m.architecture;
  c.input_shape = m.input_shape;
  c.tile = m.tile;
  for (size_t i = 0; i < m.size(); ++i) {
    c.add(make_layer(m.layer(i).spec()), m.name(i));
    auto src = m.layer(i).params(), dst = c.layer(i).params();
    for (size_t j = 0; j < src.size(); ++j) *dst[j].value = *src[j].value;
  }
  return c;
}

std::vector<std::string> model_names() { return {"lenet5", "lenet5-classic"}; }

Sequential build_model(const std::string& name, bool bias) {
  bool classic = name == "lenet5-classic";
  if (name != "lenet5" && !classic)
    throw Error("unknown model \"" + name + "\" (--model): choose lenet5 or lenet5-classic");
  auto act = [&] { return std::make_unique<Activation>(classic ? ActKind::sigmoid : ActKind::relu); };
  auto pool = [&] { return std::make_unique<Pool2d>(classic ? PoolKind::avg : PoolKind::max, 2, 2); };
  Sequential m;
  m.architecture = name;
  m.input_shape = {1, 32, 32};
  m.add(std::make_unique<Conv2d>(1, 6, 5, 1, 0, bias), "conv1");
  m.add(act(), "act1");
  m.add(pool(), "pool1");
  m.add(std::make_unique<Conv2d>(6, 16, 5, 1, 0, bias), "conv2");
  m.add(act(), "act2");
  m.add(pool(), "pool2");
  m.add(std::make_unique<Conv2d>(16, 120, 5, 1, 0, bias), "conv3");
  m.add(act(), "act3");
  m.add(std::make_unique<Flatten>(), "flatten");
  m.add(std::make_unique<Linear>(120, 84, bias), "fc1");
  m.add(act(), "act4");
  m.add(std::make_unique<Linear>(84, 10, bias), "fc2");
  if (classic) m.add(std::make_unique<Softmax>(), "softmax");
  return m;
}

}  // namespace lowbit
