// Quantized model files: QModel <-> safetensors. The reader trusts nothing: every bit width,
// scale, zero point, integer range, multiplier and shape is checked before an Engine sees it.
#include <cmath>

#include "lowbit/engine.h"
#include "lowbit/io.h"

namespace lowbit {

namespace {

nlohmann::json qparams_json(const QParams& p) {
  return {{"scale", p.scale}, {"zero_point", p.zero_point}, {"bits", p.bits}, {"narrow", p.narrow},
          {"scheme", scheme_name(p.scheme)}};
}

std::vector<int64_t> dims(std::initializer_list<int64_t> d) { return d; }

struct Reader {
  std::string file;
  [[noreturn]] void fail(const std::string& what) const { throw Error(file + ": " + what); }

  const nlohmann::json& field(const nlohmann::json& j, const char* key, const std::string& where) const {
    if (!j.is_object() || !j.contains(key)) fail(where + " lacks \"" + key + "\"");
    return j[key];
  }
  int integer(const nlohmann::json& j, const char* key, const std::string& where, int lo, int hi) const {
    const nlohmann::json& v = field(j, key, where);
    if (!v.is_number_integer()) fail(where + "." + key + " must be an integer");
    int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) fail(where + "." + key + " = " + std::to_string(x) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return static_cast<int>(x);
  }
  bool boolean(const nlohmann::json& j, const char* key, const std::string& where) const {
    const nlohmann::json& v = field(j, key, where);
    if (!v.is_boolean()) fail(where + "." + key + " must be true or false");
    return v.get<bool>();
  }
  std::string string(const nlohmann::json& j, const char* key, const std::string& where) const {
    const nlohmann::json& v = field(j, key, where);
    if (!v.is_string()) fail(where + "." + key + " must be a string");
    return v.get<std::string>();
  }
  QParams qparams(const nlohmann::json& j, const std::string& where) const {
    QParams p;
    p.bits = integer(j, "bits", where, 2, 8);
    p.narrow = boolean(j, "narrow", where);
    try {
      p.scheme = parse_scheme(string(j, "scheme", where));
    } catch (const Error& e) {
      fail(where + ": " + e.what());
    }
    const nlohmann::json& s = field(j, "scale", where);
    if (!s.is_number()) fail(where + ".scale must be a number");
    p.scale = s.get<float>();
    if (!(p.scale > 0) || !std::isfinite(p.scale)) fail(where + ".scale must be finite and > 0");
    p.zero_point = integer(j, "zero_point", where, p.qmin(), p.qmax());
    return p;
  }
};

}  // namespace

void save_qmodel(const std::string& path, const QModel& q) {
  SafetensorsFile f;
  nlohmann::json ops = nlohmann::json::array();
  for (const QOp& op : q.ops) {
    nlohmann::json j = {{"kind", qop_kind_name(op.kind)}, {"name", op.name}, {"kernel", op.kernel}, {"stride", op.stride}};
    if (op.weighted()) {
      j.update({{"in_ch", op.in_ch}, {"out_ch", op.out_ch}, {"pad", op.pad}, {"relu", op.relu}, {"wbits", op.wbits},
                {"per_channel", op.per_channel}, {"abc_bases", op.abc_bases}, {"bias", !op.bias.empty()},
                {"in", qparams_json(op.in)}, {"out", qparams_json(op.out)}});
      const int64_t oc = op.out_ch, K = op.k();
      f.tensors.push_back(tensor_i8(op.name + ".weight", dims({oc, K}), op.weight.data(), op.weight.size()));
      if (!op.bias.empty()) f.tensors.push_back(tensor_i32(op.name + ".bias", dims({oc}), op.bias.data(), op.bias.size()));
      f.tensors.push_back(tensor_f32(op.name + ".w_scale", dims({oc}), op.w_scale.data(), op.w_scale.size()));
      if (!op.q31.empty()) {
        f.tensors.push_back(tensor_f32(op.name + ".m", dims({oc}), op.m.data(), op.m.size()));
        f.tensors.push_back(tensor_i32(op.name + ".q31", dims({oc}), op.q31.data(), op.q31.size()));
        f.tensors.push_back(tensor_i32(op.name + ".shift", dims({oc}), op.shift.data(), op.shift.size()));
        f.tensors.push_back(tensor_i32(op.name + ".divisor", dims({oc}), op.divisor.data(), op.divisor.size()));
      }
    }
    ops.push_back(j);
  }
  f.meta = {{"kind", "quantized"},
            {"architecture", q.architecture},
            {"input_shape", q.input_shape},
            {"input", qparams_json(q.input)},
            {"rounding", rounding_name(q.rounding)},
            {"requant", requant_variant_name(q.variant)},
            {"ops", ops},
            {"info", q.info}};
  write_safetensors(path, f);
}

QModel load_qmodel(const std::string& path) { return qmodel_from_safetensors(read_safetensors(path)); }

QModel qmodel_from_safetensors(const SafetensorsFile& f) {
  const std::string& path = f.source;
  Reader r{path};
  const nlohmann::json& meta = f.meta;
  std::string kind = r.string(meta, "kind", "metadata");
  if (kind == "fp32")
    r.fail("is an FP32 model; this command needs a quantized model (make one with lowbit quantize or lowbit qat)");
  if (kind != "quantized") r.fail("metadata kind \"" + kind + "\" is not a lowbit model");
  QModel q;
  q.architecture = r.string(meta, "architecture", "metadata");
  const nlohmann::json& shape = r.field(meta, "input_shape", "metadata");
  if (!shape.is_array() || shape.size() != 3) r.fail("metadata.input_shape must be [C, H, W]");
  for (const auto& d : shape) {
    if (!d.is_number_integer() || d.get<int64_t>() < 1 || d.get<int64_t>() > 4096) r.fail("metadata.input_shape has a bad dimension");
    q.input_shape.push_back(d.get<int>());
  }
  q.input = r.qparams(r.field(meta, "input", "metadata"), "metadata.input");
  try {
    q.rounding = parse_rounding(r.string(meta, "rounding", "metadata"));
    std::string v = r.string(meta, "requant", "metadata");
    bool found = false;
    for (RequantVariant cand : {RequantVariant::fixedpoint, RequantVariant::fixedpoint_floor, RequantVariant::float_nearest,
                                RequantVariant::float_floor, RequantVariant::divide_nearest, RequantVariant::divide_floor})
      if (v == requant_variant_name(cand)) q.variant = cand, found = true;
    if (!found) r.fail("metadata.requant \"" + v + "\" is unknown");
  } catch (const Error& e) {
    if (std::string(e.what()).rfind(path, 0) == 0) throw;
    r.fail(e.what());
  }
  if (meta.contains("info")) q.info = meta["info"];
  const nlohmann::json& ops = r.field(meta, "ops", "metadata");
  if (!ops.is_array() || ops.empty() || ops.size() > 1000) r.fail("metadata.ops must be a non-empty list");
  for (size_t i = 0; i < ops.size(); ++i) {
    const nlohmann::json& j = ops[i];
    std::string where = "ops[" + std::to_string(i) + "]";
    QOp op;
    op.name = r.string(j, "name", where);
    where += " (" + op.name + ")";
    std::string k = r.string(j, "kind", where);
    if (k == "conv") op.kind = QOpKind::conv;
    else if (k == "linear") op.kind = QOpKind::linear;
    else if (k == "maxpool") op.kind = QOpKind::maxpool;
    else if (k == "avgpool") op.kind = QOpKind::avgpool;
    else if (k == "flatten") op.kind = QOpKind::flatten;
    else r.fail(where + ": unknown op kind \"" + k + "\"");
    op.kernel = r.integer(j, "kernel", where, 1, 64);
    op.stride = r.integer(j, "stride", where, 1, 64);
    if (op.weighted()) {
      op.in_ch = r.integer(j, "in_ch", where, 1, 1 << 16);
      op.out_ch = r.integer(j, "out_ch", where, 1, 1 << 16);
      op.pad = r.integer(j, "pad", where, 0, 64);
      op.relu = r.boolean(j, "relu", where);
      op.wbits = r.integer(j, "wbits", where, 2, 8);
      op.per_channel = r.boolean(j, "per_channel", where);
      op.abc_bases = r.integer(j, "abc_bases", where, 0, 5);
      op.in = r.qparams(r.field(j, "in", where), where + ".in");
      op.out = r.qparams(r.field(j, "out", where), where + ".out");
      const size_t oc = static_cast<size_t>(op.out_ch), K = static_cast<size_t>(op.k());
      if (oc * K > (size_t{1} << 28)) r.fail(where + ": weight tensor too large");
      op.weight.resize(oc * K);
      copy_i8(f.get(op.name + ".weight"), op.weight.data(), op.weight.size());
      const int wlo = -(1 << (op.wbits - 1)), whi = (1 << (op.wbits - 1)) - 1;
      for (size_t e = 0; e < op.weight.size(); ++e)
        if (op.weight[e] < wlo || op.weight[e] > whi)
          r.fail(op.name + ".weight[" + std::to_string(e) + "] = " + std::to_string(op.weight[e]) + " does not fit " + std::to_string(op.wbits) + " bits");
      if (r.boolean(j, "bias", where)) {
        op.bias.resize(oc);
        copy_i32(f.get(op.name + ".bias"), op.bias.data(), oc);
      }
      op.w_scale.resize(oc);
      copy_f32(f.get(op.name + ".w_scale"), op.w_scale.data(), oc);
      for (float s : op.w_scale)
        if (!(s > 0) || !std::isfinite(s)) r.fail(op.name + ".w_scale holds a value that is not finite and > 0");
      if (f.find(op.name + ".q31")) {
        op.m.resize(oc), op.q31.resize(oc), op.shift.resize(oc), op.divisor.resize(oc);
        copy_f32(f.get(op.name + ".m"), op.m.data(), oc);
        copy_i32(f.get(op.name + ".q31"), op.q31.data(), oc);
        copy_i32(f.get(op.name + ".shift"), op.shift.data(), oc);
        copy_i32(f.get(op.name + ".divisor"), op.divisor.data(), oc);
        for (size_t c = 0; c < oc; ++c) {
          if (op.q31[c] < (1 << 30)) r.fail(op.name + ".q31[" + std::to_string(c) + "] = " + std::to_string(op.q31[c]) + " is outside [2^30, 2^31)");
          if (op.shift[c] < -31 || op.shift[c] > 30) r.fail(op.name + ".shift[" + std::to_string(c) + "] = " + std::to_string(op.shift[c]) + " is outside [-31, 30]");
          if (!(op.m[c] > 0) || !std::isfinite(op.m[c])) r.fail(op.name + ".m[" + std::to_string(c) + "] is not finite and > 0");
          if (op.divisor[c] < 0) r.fail(op.name + ".divisor[" + std::to_string(c) + "] is negative");
        }
      }
    }
    q.ops.push_back(std::move(op));
  }
  // Every weighted op but the last needs its multipliers.
  for (size_t i = 0; i + 1 < q.ops.size(); ++i)
    if (q.ops[i].weighted() && q.ops[i].q31.empty()) r.fail(q.ops[i].name + " lacks its requantization multipliers");
  try {
    Engine check(q);  // shapes chain, last op weighted, bias correction fits
  } catch (const Error& e) {
    r.fail(e.what());
  }
  return q;
}

}  // namespace lowbit
