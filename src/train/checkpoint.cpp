// Training checkpoints in the safetensors layout: "model.<layer>.<param>" and "opt.<i>" tensors,
// metadata {"kind": "checkpoint", "epochs_done", "steps", "config", "history"}.
#include <cmath>

#include "lowbit/io.h"
#include "lowbit/train.h"

namespace lowbit {

void save_checkpoint(const std::string& path, Sequential& model, Optimizer& opt, const Checkpoint& c) {
  SafetensorsFile f;
  for (size_t i = 0; i < model.size(); ++i)
    for (Param& p : model.layer(i).params()) f.tensors.push_back(tensor_from("model." + model.name(i) + "." + p.name, *p.value));
  std::vector<Tensor*> state = opt.state();
  for (size_t i = 0; i < state.size(); ++i) f.tensors.push_back(tensor_from("opt." + std::to_string(i), *state[i]));
  nlohmann::json hist = nlohmann::json::array();
  for (const EpochStats& s : c.history)
    hist.push_back({{"epoch", s.epoch}, {"loss", s.loss}, {"test_accuracy", s.test_accuracy}, {"seconds", s.seconds},
                    {"images_per_second", s.images_per_second}});
  f.meta = {{"kind", "checkpoint"}, {"epochs_done", c.epochs_done}, {"steps", c.steps}, {"config", c.config}, {"history", hist}};
  write_safetensors(path, f);
}

static SafetensorsFile read_checkpoint_file(const std::string& path) {
  SafetensorsFile f = read_safetensors(path);
  if (!f.meta.is_object() || f.meta.value("kind", "") != "checkpoint")
    throw Error(path + ": not a lowbit training checkpoint (--resume takes the .ckpt file lowbit train writes)");
  return f;
}

nlohmann::json checkpoint_config(const std::string& path) {
  SafetensorsFile f = read_checkpoint_file(path);
  if (!f.meta.contains("config") || !f.meta["config"].is_object()) throw Error(path + ": checkpoint lacks its config");
  return f.meta["config"];
}

Checkpoint load_checkpoint(const std::string& path, Sequential& model, Optimizer& opt) {
  SafetensorsFile f = read_checkpoint_file(path);
  Checkpoint c;
  try {
    c.epochs_done = f.meta.at("epochs_done").get<int>();
    c.steps = f.meta.at("steps").get<int64_t>();
    c.config = f.meta.at("config");
    for (const auto& h : f.meta.at("history"))
      c.history.push_back({h.at("epoch").get<int>(), h.at("loss").get<double>(), h.at("test_accuracy").get<double>(),
                           h.at("seconds").get<double>(), h.at("images_per_second").get<double>()});
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": malformed checkpoint metadata: " + e.what());
  }
  if (c.epochs_done < 0 || c.steps < 0) throw Error(path + ": negative epoch or step count");
  auto load = [&](const std::string& name, Tensor& t) {
    const TensorEntry& e = f.get(name);
    std::vector<int64_t> want(t.shape().begin(), t.shape().end());
    if (e.shape != want) throw Error(path + ": tensor " + name + " has the wrong shape");
    copy_f32(e, t.data(), static_cast<size_t>(t.numel()));
    for (int64_t i = 0; i < t.numel(); ++i)
      if (!std::isfinite(t[i])) throw Error(path + ": tensor " + name + " holds a non-finite value");
  };
  for (size_t i = 0; i < model.size(); ++i)
    for (Param& p : model.layer(i).params()) load("model." + model.name(i) + "." + p.name, *p.value);
  std::vector<Tensor*> state = opt.state();
  for (size_t i = 0; i < state.size(); ++i) load("opt." + std::to_string(i), *state[i]);
  opt.steps = c.steps;
  return c;
}

}  // namespace lowbit
