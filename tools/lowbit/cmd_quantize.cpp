// lowbit quantize: post-training quantization of an FP32 model file into an integer model file,
// with the FP32, simulated and engine accuracies on the test set and a per-layer table of scales.
// Not here: the quantizer itself (src/engine/quantizer.cpp), the engine (src/engine/engine.cpp).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "cli.h"
#include "lowbit/data.h"
#include "lowbit/engine.h"
#include "lowbit/nn.h"
#include "lowbit/quantizer.h"
#include "lowbit/train.h"

namespace lowbit::cli {

namespace {

struct QuantizeOpts {
  Common common;
  std::string model, data = "fashion-mnist", out;
  std::string calibrator = "kl", input_calibrator = "max", scheme = "affine", rounding = "nearest";
  std::string requant = "fixedpoint", weight_clip = "auto", bias_correction = "auto";
  int wbits = 8, abits = 8, abc_bases = 0, samples = 1000, calib_batch = 256;
  bool per_channel = false, kl_no_despike = false, sigma_all_values = false, observe_before_pool = false;
  double percentile = 99.99;
};

// Runs `fn` and prefixes an Error's message with the flag it came from.
template <class F>
auto for_flag(const char* flag, F fn) {
  try {
    return fn();
  } catch (const Error& e) {
    throw Error(std::string(flag) + ": " + e.what());
  }
}

PtqConfig make_config(const QuantizeOpts& o) {
  PtqConfig c;
  c.calibrator = for_flag("--calibrator", [&] { return parse_calibrator(o.calibrator); });
  c.input_calibrator = for_flag("--input-calibrator", [&] { return parse_calibrator(o.input_calibrator); });
  for_flag("--wbits", [&] { check_bits(o.wbits); });
  for_flag("--abits", [&] { check_bits(o.abits); });
  c.wbits = o.wbits;
  c.abits = o.abits;
  c.per_channel = o.per_channel;
  c.act_scheme = for_flag("--scheme", [&] { return parse_scheme(o.scheme); });
  c.rounding = for_flag("--rounding", [&] { return parse_rounding(o.rounding); });
  if (o.requant != "fixedpoint" && o.requant != "float" && o.requant != "divide")
    throw Error("--requant: unknown variant '" + o.requant + "' (allowed: fixedpoint, float, divide)");
  c.requant = o.requant;
  if (o.abc_bases < 0 || o.abc_bases > 5) throw Error(fmt::format("--abc-bases: must be in 0..5, got {}", o.abc_bases));
  c.abc_bases = o.abc_bases;
  if (!(o.percentile > 0 && o.percentile <= 100))
    throw Error(fmt::format("--percentile: must be in (0, 100], got {}", o.percentile));
  c.percentile = o.percentile;
  if (o.samples < 1)
    throw Error(fmt::format("--samples: must be >= 1 (the calibration set would be empty), got {}", o.samples));
  c.samples = o.samples;
  if (o.calib_batch < 1) throw Error(fmt::format("--calib-batch: must be >= 1, got {}", o.calib_batch));
  c.calib_batch = o.calib_batch;
  c.kl_despike = !o.kl_no_despike;
  c.sigma_nonzero = !o.sigma_all_values;
  c.observe_after_pool = !o.observe_before_pool;
  if (o.bias_correction != "auto" && o.bias_correction != "on" && o.bias_correction != "off")
    throw Error("--bias-correction: unknown '" + o.bias_correction + "' (allowed: auto, on, off)");
  c.bias_correction = o.bias_correction;
  if (o.weight_clip != "auto" && o.weight_clip != "max" && o.weight_clip != "mse")
    throw Error("--weight-clip: unknown '" + o.weight_clip + "' (allowed: auto, max, mse)");
  c.weight_clip = o.weight_clip;
  validate(c);
  return c;
}

int argmax(const float* v, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return best;
}

// Arg-max predictions of `run(x, logits)` over a data set, in chunks (simulate keeps every
// activation of its batch, so whole-test-set batches would need hundreds of MB).
template <class Run>
std::vector<int> predictions(const Dataset& d, Run run) {
  std::vector<int> pred(static_cast<size_t>(d.size()));
  const int chunk = 1000;
  const int64_t per = d.images.numel() / std::max(1, d.size());
  Tensor x, logits;
  for (int b0 = 0; b0 < d.size(); b0 += chunk) {
    const int b1 = std::min(d.size(), b0 + chunk);
    Shape s = d.images.shape();
    s[0] = b1 - b0;
    x.resize(s);
    std::memcpy(x.data(), d.images.data() + int64_t{b0} * per, static_cast<size_t>(int64_t{b1 - b0} * per) * sizeof(float));
    run(x, logits);
    const int classes = logits.dim(1);
    for (int i = 0; i < b1 - b0; ++i) pred[static_cast<size_t>(b0 + i)] = argmax(logits.data() + int64_t{i} * classes, classes);
  }
  return pred;
}

double accuracy_of(const std::vector<int>& pred, const std::vector<uint8_t>& labels) {
  int64_t ok = 0;
  for (size_t i = 0; i < pred.size(); ++i) ok += pred[i] == labels[i];
  return pred.empty() ? 0.0 : static_cast<double>(ok) / static_cast<double>(pred.size());
}

const nlohmann::json* tensor_entry(const QModel& q, const std::string& name) {
  for (const auto& t : q.info.at("tensors"))
    if (t.at("tensor") == name) return &t;
  return nullptr;
}

std::string range_str(double lo, double hi) { return fmt::format("[{:.4g}, {:.4g}]", lo, hi); }

void run_quantize(const QuantizeOpts& o) {
  apply(o.common);
  const PtqConfig cfg = make_config(o);
  check_output_path(o.out, "--out");
  if (model_kind(o.model) == "quantized")
    throw Error(o.model + ": is already a quantized model; quantize needs the FP32 model written by "
                "`lowbit train` (a quantized model is evaluated with `lowbit eval`)");
  Sequential model = load_model(o.model);
  Dataset calib = load_split(o.data, true, cfg.samples);
  Dataset test = load_split(o.data, false);
  std::vector<std::string> notes;
  if (calib.size() < cfg.samples)
    notes.push_back(fmt::format("--samples {}: the training split has only {} images; calibrated on all of them",
                                cfg.samples, calib.size()));

  const double acc_fp32 = evaluate(model, test);
  const auto t0 = std::chrono::steady_clock::now();
  QModel q = quantize_model(model, calib.images, cfg, &notes);
  const double quantize_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const nlohmann::json& cs = q.timing;
  const double calib_seconds = cs["total"].get<double>();
  q.info["source_model"] = o.model;
  q.info["notes"] = notes;

  std::vector<int> sim = predictions(test, [&](const Tensor& x, Tensor& l) { simulate(q, x, l); });
  Engine engine(q);
  std::vector<int> eng = predictions(test, [&](const Tensor& x, Tensor& l) { engine.run(x, l); });
  const double acc_sim = accuracy_of(sim, test.labels), acc_eng = accuracy_of(eng, test.labels);
  int mismatches = 0;
  for (size_t i = 0; i < sim.size(); ++i) mismatches += sim[i] != eng[i];
  save_qmodel(o.out, q);

  // Per-layer table and JSON.
  nlohmann::json layers = nlohmann::json::array();
  const nlohmann::json* in_t = tensor_entry(q, "input");
  const std::string pc = cfg.per_channel ? "per-channel" : "per-tensor";
  std::printf("quantized %s (%s): w%da%d %s weights (symmetric), %s activations, calibrator %s (input: %s), "
              "rounding %s, requant %s%s\n",
              o.model.c_str(), q.architecture.c_str(), cfg.wbits, cfg.abits, pc.c_str(), scheme_name(cfg.act_scheme),
              calibrator_name(cfg.calibrator), calibrator_name(cfg.input_calibrator), rounding_name(cfg.rounding),
              requant_variant_name(q.variant), cfg.abc_bases ? fmt::format(", ABC-Net {} bases", cfg.abc_bases).c_str() : "");
  std::printf("calibration on %d training images: %.3f s (forward passes %.3f s, range pass %.3f s, histogram pass "
              "%.3f s, thresholds %.3f s); quantization total %.3f s\n\n",
              calib.size(), calib_seconds, cs["forward"].get<double>(), cs["observe_range"].get<double>(),
              cs["observe_hist"].get<double>(), cs["calibrate"].get<double>(), quantize_seconds);
  std::printf("%-8s %-12s %-10s %5s %-10s %5s %-22s %-10s %-21s %s\n", "layer", "op", "s_in", "z_in", "s_out", "z_out",
              "clip range", "calib", "weight scale", "M = s_w s_in / s_out");
  if (in_t)
    std::printf("%-8s %-12s %-10s %5s %-10.4g %5d %-22s %-10s\n", "input", "quantize", "--", "--",
                static_cast<double>(q.input.scale), q.input.zero_point,
                range_str((*in_t)["clip"][0].get<double>(), (*in_t)["clip"][1].get<double>()).c_str(),
                (*in_t)["calibrator"].get<std::string>().c_str());
  for (size_t k = 0; k < q.ops.size(); ++k) {
    const QOp& op = q.ops[k];
    if (!op.weighted()) continue;
    const bool last = k + 1 == q.ops.size();
    const nlohmann::json* t = tensor_entry(q, op.name);
    const auto [ws_lo, ws_hi] = std::minmax_element(op.w_scale.begin(), op.w_scale.end());
    double m_lo = 1e300, m_hi = 0;
    for (float s : op.w_scale) {
      const double m = static_cast<double>(s) * op.in.scale / op.out.scale;
      m_lo = std::min(m_lo, m);
      m_hi = std::max(m_hi, m);
    }
    const std::string kind = std::string(qop_kind_name(op.kind)) + (op.relu ? "+relu" : "");
    const double clo = t ? (*t)["clip"][0].get<double>() : 0.0, chi = t ? (*t)["clip"][1].get<double>() : 0.0;
    const std::string cal = t ? (*t)["calibrator"].get<std::string>() : "?";
    std::printf("%-8s %-12s %-10.4g %5d %-10.4g %5d %-22s %-10s %-21s %s\n", op.name.c_str(), kind.c_str(),
                static_cast<double>(op.in.scale), op.in.zero_point, static_cast<double>(op.out.scale),
                op.out.zero_point, range_str(clo, chi).c_str(), cal.c_str(),
                range_str(*ws_lo, *ws_hi).c_str(), last ? "-- (int32 logits)" : range_str(m_lo, m_hi).c_str());
    layers.push_back({{"name", op.name},
                      {"kind", qop_kind_name(op.kind)},
                      {"relu", op.relu},
                      {"s_in", op.in.scale},
                      {"z_in", op.in.zero_point},
                      {"s_out", op.out.scale},
                      {"z_out", op.out.zero_point},
                      {"clip", {clo, chi}},
                      {"observed", t ? (*t)["observed"] : nlohmann::json()},
                      {"calibrator", cal},
                      {"wbits", op.wbits},
                      {"per_channel", op.per_channel},
                      {"w_scale_min", *ws_lo},
                      {"w_scale_max", *ws_hi},
                      {"m_min", last ? nlohmann::json() : nlohmann::json(m_lo)},
                      {"m_max", last ? nlohmann::json() : nlohmann::json(m_hi)},
                      {"final", last}});
  }
  std::printf("\naccuracy on %d test images: fp32 %.2f%%, simulated %.2f%%, engine %.2f%% (drop %.2f points); "
              "engine vs simulation: %d of %d predictions differ\n",
              test.size(), 100 * acc_fp32, 100 * acc_sim, 100 * acc_eng, 100 * (acc_fp32 - acc_eng), mismatches,
              test.size());
  for (const std::string& n : notes) std::printf("note: %s\n", n.c_str());
  std::printf("wrote %s\n", o.out.c_str());

  nlohmann::json input = {{"scale", q.input.scale}, {"zero_point", q.input.zero_point}};
  if (in_t) {
    input["clip"] = (*in_t)["clip"];
    input["observed"] = (*in_t)["observed"];
    input["calibrator"] = (*in_t)["calibrator"];
  }
  write_json(o.common, {{"accuracy_fp32", acc_fp32},
                        {"accuracy_quantized", acc_eng},
                        {"accuracy_simulated", acc_sim},
                        {"prediction_mismatches", mismatches},
                        {"test_images", test.size()},
                        {"calibration_seconds", calib_seconds},
                        {"calibration_breakdown_seconds", cs},
                        {"quantize_seconds", quantize_seconds},
                        {"calibration_images", calib.size()},
                        {"config",
                         {{"calibrator", calibrator_name(cfg.calibrator)},
                          {"input_calibrator", calibrator_name(cfg.input_calibrator)},
                          {"wbits", cfg.wbits},
                          {"abits", cfg.abits},
                          {"per_channel", cfg.per_channel},
                          {"scheme", scheme_name(cfg.act_scheme)},
                          {"rounding", rounding_name(cfg.rounding)},
                          {"requant", cfg.requant},
                          {"abc_bases", cfg.abc_bases},
                          {"percentile", cfg.percentile},
                          {"kl_despike", cfg.kl_despike},
                          {"sigma_nonzero", cfg.sigma_nonzero},
                          {"observe_after_pool", cfg.observe_after_pool},
                          {"weight_clip", q.info["weight_clip"]},
                          {"bias_correction", q.info["bias_correction"]}}},
                        {"input", input},
                        {"layers", layers},
                        {"notes", notes},
                        {"threads", threads()},
                        {"model", o.model},
                        {"out", o.out}});
}

}  // namespace

void add_quantize_command(CLI::App& app) {
  auto* q = app.add_subcommand("quantize", "Post-training quantization of an FP32 model to an integer model");
  static QuantizeOpts qo;
  add_common(q, qo.common);
  q->add_option("model", qo.model, "FP32 model file (from lowbit train)")->required();
  q->add_option("--data", qo.data, "Folder with the IDX files (or 'fashion-mnist')")->capture_default_str();
  q->add_option("--calibrator", qo.calibrator, "Activation ranges: max | 3sigma | percentile | kl | mse")
      ->capture_default_str();
  q->add_option("--input-calibrator", qo.input_calibrator, "Range of the network input (same choices)")
      ->capture_default_str();
  q->add_option("--wbits", qo.wbits, "Weight bits, 2..8 (weights are symmetric)")->capture_default_str();
  q->add_option("--abits", qo.abits, "Activation bits, 2..8")->capture_default_str();
  q->add_flag("--per-channel", qo.per_channel, "One weight scale per output channel");
  q->add_option("--scheme", qo.scheme, "Activations: symmetric | affine")->capture_default_str();
  q->add_option("--rounding", qo.rounding, "nearest | floor (x / s and requantization)")->capture_default_str();
  q->add_option("--requant", qo.requant, "fixedpoint | float | divide")->capture_default_str();
  q->add_option("--weight-clip", qo.weight_clip,
                "Weight scale: max (max|w|) | mse (least squared error clip) | auto (mse below 8 bits)")
      ->capture_default_str();
  q->add_option("--abc-bases", qo.abc_bases, "ABC-Net: approximate weights by M binary bases first (0 = off)")
      ->capture_default_str();
  q->add_option("--percentile", qo.percentile, "Percentile of |x| for --calibrator percentile")->capture_default_str();
  q->add_flag("--kl-no-despike", qo.kl_no_despike,
              "kl: plain TensorRT search (do not cap one-bin spikes of the histogram first)");
  q->add_option("--bias-correction", qo.bias_correction,
                "Take each channel's mean pre-activation error on the calibration images off its bias: on | off | "
                "auto (on below 8 weight bits)")
      ->capture_default_str();
  q->add_flag("--sigma-all-values", qo.sigma_all_values,
              "3sigma: mean and std over all values, zeros included (default: the non-zero values)");
  q->add_flag("--observe-before-pool", qo.observe_before_pool,
              "Calibrate a layer followed by a max pool on its own output (default: on the pool's output, the "
              "values the engine stores)");
  q->add_option("--samples", qo.samples, "Calibration images: the first N training images")->capture_default_str();
  q->add_option("--calib-batch", qo.calib_batch, "Images per forward pass during calibration")->capture_default_str();
  q->add_option("--out,-o", qo.out, "Quantized model file to write")->required();
  q->callback([] { run_quantize(qo); });
}

}  // namespace lowbit::cli
