// Sequential model, layer factory and the model builders (LeNet-5 variants of seed 004).
#include <algorithm>

#include "lowbit/nn.h"

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

const Tensor& Sequential::forward(const Tensor& input) {
  acts_.resize(layers_.size() + 1);
  acts_[0] = input;
  for (size_t i = 0; i < layers_.size(); ++i) {
    acts_[i + 1].resize(layers_[i]->output_shape(acts_[i].shape()));
    layers_[i]->forward(acts_[i], acts_[i + 1]);
  }
  return acts_.back();
}

size_t Sequential::logits_end() const {
  size_t n = layers_.size();
  return (n > 0 && layers_[n - 1]->type() == "Softmax") ? n - 1 : n;
}

void Sequential::backward(const Tensor& dout, size_t end) {
  grads_.resize(layers_.size() + 1);
  grads_[end] = dout;
  for (size_t i = end; i-- > 0;) {
    Tensor* din = nullptr;
    if (i > 0) {
      grads_[i].resize(acts_[i].shape());
      din = &grads_[i];
    }
    layers_[i]->backward(acts_[i], acts_[i + 1], grads_[i + 1], din);
  }
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
