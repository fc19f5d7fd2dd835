// FP32 model files: Sequential <-> safetensors with lowbit metadata.
#include <cmath>

#include "lowbit/io.h"
#include "lowbit/nn.h"

namespace lowbit {

void save_model(const std::string& path, Sequential& model, const nlohmann::json& extra) {
  SafetensorsFile f;
  nlohmann::json layers = nlohmann::json::array();
  for (size_t i = 0; i < model.size(); ++i) {
    layers.push_back({{"name", model.name(i)}, {"spec", model.layer(i).spec()}});
    for (Param& p : model.layer(i).params()) f.tensors.push_back(tensor_from(model.name(i) + "." + p.name, *p.value));
  }
  f.meta = {{"kind", "fp32"}, {"architecture", model.architecture}, {"input_shape", model.input_shape}, {"layers", layers}};
  if (!extra.is_null()) f.meta["extra"] = extra;
  write_safetensors(path, f);
}

static const nlohmann::json& meta_field(const SafetensorsFile& f, const char* key) {
  if (!f.meta.is_object() || !f.meta.contains(key))
    throw Error(f.source + ": not a lowbit model file (metadata lacks \"" + key + "\")");
  return f.meta[key];
}

std::string model_kind(const std::string& path) {
  SafetensorsFile f = read_safetensors(path);
  const nlohmann::json& k = meta_field(f, "kind");
  if (!k.is_string()) throw Error(path + ": metadata \"kind\" must be a string");
  return k.get<std::string>();
}

Sequential load_model(const std::string& path) { return model_from_safetensors(read_safetensors(path)); }

Sequential model_from_safetensors(const SafetensorsFile& f) {
  const std::string& path = f.source;
  const nlohmann::json& kind = meta_field(f, "kind");
  if (kind != "fp32")
    throw Error(path + ": is a " + (kind.is_string() ? kind.get<std::string>() : std::string("?")) +
                " model; this command needs an FP32 model (as written by lowbit train)");
  Sequential m;
  try {
    m.architecture = meta_field(f, "architecture").get<std::string>();
    m.input_shape = meta_field(f, "input_shape").get<Shape>();
    for (const auto& l : meta_field(f, "layers")) m.add(make_layer(l.at("spec")), l.at("name").get<std::string>());
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": malformed model metadata: " + e.what());
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  for (int d : m.input_shape)
    if (d <= 0 || d > 4096) throw Error(path + ": bad input_shape in metadata");
  Shape in = m.input_shape;
  in.insert(in.begin(), 1);
  try {
    m.output_shape(in);
  } catch (const Error& e) {
    throw Error(path + ": layers do not chain: " + e.what());
  }
  for (size_t i = 0; i < m.size(); ++i)
    for (Param& p : m.layer(i).params()) {
      std::string name = m.name(i) + "." + p.name;
      const TensorEntry& e = f.get(name);
      std::vector<int64_t> want(p.value->shape().begin(), p.value->shape().end());
      if (e.shape != want) throw Error(path + ": tensor " + name + " has the wrong shape for its layer");
      copy_f32(e, p.value->data(), static_cast<size_t>(p.value->numel()));
      for (int64_t j = 0; j < p.value->numel(); ++j)
        if (!std::isfinite((*p.value)[j]))
          throw Error(path + ": tensor " + name + " holds a non-finite value (NaN or Inf) at index " + std::to_string(j));
    }
  return m;
}

}  // namespace lowbit
