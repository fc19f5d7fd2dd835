// lowbit run: the main job. Trains (or loads) LeNet-5, shows its summary and statistics, quantizes
// it every supported way, runs QAT and ABC-Net, evaluates each in the integer engine, analyses the
// per-layer error, benchmarks FP32 against int8, and writes report.html, report.md and
// results.json. results.json is rewritten after every section, so a run stopped by Ctrl-C keeps
// what it finished and says what it skipped.
// Also: lowbit analyze (per-layer SQNR / cosine and sensitivity of one quantized model).
#include <fmt/format.h>
#include <sys/stat.h>

#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "cli.h"
#include "run_config.h"
#include "kernels/dispatch.h"
#include "lowbit/analysis.h"
#include "lowbit/bench.h"
#include "lowbit/io.h"
#include "lowbit/qat.h"
#include "lowbit/quantizer.h"
#include "lowbit/report.h"
#include "lowbit/train.h"

namespace lowbit::cli {

namespace {

using Json = nlohmann::json;

int positive(const Json& c, const std::string& key) {
  Json v = c;
  std::string part, rest = key;
  while (!rest.empty()) {
    size_t dot = rest.find('.');
    part = rest.substr(0, dot);
    rest = dot == std::string::npos ? "" : rest.substr(dot + 1);
    v = v[part];
  }
  if (!v.is_number() || v.get<double>() <= 0) throw Error("config: key \"" + key + "\" must be positive, got " + v.dump());
  return v.is_number_integer() ? v.get<int>() : 1;
}

std::pair<int, int> bits_pair(const Json& p, const std::string& key) {
  if (!p.is_array() || p.size() != 2 || !p[0].is_number_integer() || !p[1].is_number_integer())
    throw Error("config: key \"" + key + "\" entries must be [weight bits, activation bits], got " + p.dump());
  int w = p[0].get<int>(), a = p[1].get<int>();
  if (w < 2 || w > 8 || a < 2 || a > 8) throw Error("config: key \"" + key + "\": bits must be in 2..8, got " + p.dump());
  return {w, a};
}

// Semantic checks beyond types, so a bad value stops the run before any work.
void check_config(const Json& c) {
  for (const char* k : {"train.epochs", "train.batch", "train.lr", "stats.samples", "stats.bins", "ptq.samples",
                        "qat.epochs", "qat.lr", "analysis.images", "bench.batch", "bench.windows"})
    positive(c, k);
  if (c["threads"].get<int>() < 0) throw Error("config: key \"threads\" must be >= 0");
  std::string opt = c["train"]["optimizer"];
  if (opt != "sgd" && opt != "adam") throw Error("config: key \"train.optimizer\" must be sgd or adam, got \"" + opt + "\"");
  for (const auto& n : c["ptq"]["calibrators"]) {
    if (!n.is_string()) throw Error("config: key \"ptq.calibrators\" must list names");
    try {
      parse_calibrator(n.get<std::string>());
    } catch (const Error& e) {
      throw Error(std::string("config: key \"ptq.calibrators\": ") + e.what());
    }
  }
  for (const char* k : {"bit_widths", "sweep"})
    for (const auto& p : c["ptq"][k]) bits_pair(p, std::string("ptq.") + k);
  for (const auto& p : c["qat"]["bit_widths"]) bits_pair(p, "qat.bit_widths");
  for (const auto& g : c["ptq"]["granularity"])
    if (g != "per-tensor" && g != "per-channel") throw Error("config: key \"ptq.granularity\" allows per-tensor and per-channel, got " + g.dump());
  for (const auto& r : c["ptq"]["requant"])
    if (r != "fixedpoint" && r != "float" && r != "divide") throw Error("config: key \"ptq.requant\" allows fixedpoint, float and divide, got " + r.dump());
  for (const auto& r : c["ptq"]["rounding"])
    if (r != "nearest" && r != "floor") throw Error("config: key \"ptq.rounding\" allows nearest and floor, got " + r.dump());
  for (const auto& m : c["qat"]["abc_bases"])
    if (!m.is_number_integer() || m.get<int>() < 1 || m.get<int>() > 5) throw Error("config: key \"qat.abc_bases\" entries must be in 1..5, got " + m.dump());
  parse_ste(c["qat"]["ste"].get<std::string>());
}

volatile std::sig_atomic_t g_interrupted = 0;
void on_sigint(int) { g_interrupted = 1; }

struct Runner {
  Json cfg;
  std::string out_dir;
  bool quiet = false;
  Json results;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  Sequential fp32;
  Dataset train_set, test_set;

  void say(const std::string& s) const {
    if (!quiet) {
      std::printf("%s\n", s.c_str());
      std::fflush(stdout);
    }
  }
  double elapsed() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
  void save() {
    results["seconds"] = elapsed();
    results["interrupted"] = g_interrupted != 0;
    write_reports(results, out_dir);
  }
  void skip(const std::string& what) { results["skipped"].push_back(what); }
  // Runs one section unless interrupted; a section that fails is recorded and the run goes on.
  template <class F>
  void section(const std::string& name, bool enabled, F body) {
    if (!enabled) return skip(name + " (disabled in the config)");
    if (g_interrupted) return skip(name + " (interrupted)");
    say(fmt::format("\n== {} ({:.0f} s so far)", name, elapsed()));
    body();
    save();
  }

  Tensor first_images(const Dataset& d, int n) {
    n = std::min(n, d.size());
    Tensor x({n, 1, 32, 32});
    std::copy_n(d.images.data(), x.numel(), x.data());
    return x;
  }

  void train_or_load() {
    const Json& t = cfg["train"];
    if (!cfg["model"].get<std::string>().empty()) {
      fp32 = load_model(cfg["model"]);
      double acc = evaluate(fp32, test_set);
      results["training"] = {{"loaded_from", cfg["model"]}, {"test_accuracy", acc}, {"epochs", Json::array()}};
      results["fp32_model_bytes"] = std::filesystem::file_size(cfg["model"].get<std::string>());
      say(fmt::format("loaded {}: test accuracy {:.2f}%", cfg["model"].get<std::string>(), 100 * acc));
      return;
    }
    fp32 = build_model("lenet5", false);
    fp32.init(t["seed"].get<uint64_t>());
    TrainConfig tc;
    tc.epochs = t["epochs"], tc.batch = t["batch"], tc.seed = t["seed"];
    tc.optim.optimizer = t["optimizer"], tc.optim.lr = t["lr"], tc.optim.momentum = t["momentum"];
    tc.optim.weight_decay = t["weight_decay"];
    tc.progress = !quiet && isatty(2);
    Optimizer opt(fp32, tc.optim);
    Json epochs = Json::array();
    double secs = 0;
    train(fp32, opt, train_set, test_set, tc, 0, [&](const EpochStats& s) {
      say(fmt::format("epoch {:2d}  loss {:.4f}  test accuracy {:.2f}%  {:.1f} s  {:.0f} images/s", s.epoch, s.loss,
                      100 * s.test_accuracy, s.seconds, s.images_per_second));
      epochs.push_back({{"epoch", s.epoch}, {"loss", s.loss}, {"test_accuracy", s.test_accuracy}, {"seconds", s.seconds}});
      secs += s.seconds;
      return !g_interrupted;
    });
    results["training"] = {{"epochs", epochs},
                           {"test_accuracy", epochs.back()["test_accuracy"]},
                           {"images_per_second", secs > 0 ? static_cast<double>(train_set.size()) * static_cast<double>(epochs.size()) / secs : 0.0},
                           {"seconds", secs}};
    save_model(out_dir + "/lenet5.safetensors", fp32, cfg["train"]);
    results["fp32_model_bytes"] = std::filesystem::file_size(out_dir + "/lenet5.safetensors");
    if (g_interrupted) skip("training epochs after " + std::to_string(epochs.size()));
  }

  void stats() {
    Tensor x = first_images(train_set, cfg["stats"]["samples"]);
    ModelStats ms = model_stats(fp32, x, cfg["stats"]["bins"]);
    // Each calibrator's 8-bit clip threshold on every calibrated activation, for the histograms.
    Json thresholds = Json::object();
    PtqConfig pc;
    for (const auto& name : cfg["ptq"]["calibrators"]) {
      pc.calibrator = parse_calibrator(name.get<std::string>());
      QModel q = quantize_model(fp32, x, pc);
      thresholds["input"][name.get<std::string>()] = q.input.scale * static_cast<float>(q.input.qmax() - q.input.zero_point);
      // Weighted ops in order match q.info's tensors 1.. (0 is the input), which name the FP32
      // activation each range was calibrated on (after a fused ReLU, or a max pool).
      size_t k = 1;
      for (const QOp& op : q.ops)
        if (op.weighted())
          thresholds[q.info["tensors"][k++]["observed_at"].get<std::string>()][name.get<std::string>()] =
              op.out.scale * static_cast<float>(op.out.qmax() - op.out.zero_point);
    }
    Json tensors = Json::array();
    auto add = [&](const TensorStats& t, const char* kind) {
      Json j = {{"name", t.name}, {"kind", kind}, {"min", t.min}, {"max", t.max}, {"mean", t.mean}, {"std", t.std},
                {"sigma3_lo", t.sigma3_lo()}, {"sigma3_hi", t.sigma3_hi()},
                {"larger", t.sigma3_larger() ? "3-sigma" : "actual"},
                {"hist", {{"lo", t.hist.lo}, {"hi", t.hist.hi}, {"counts", t.hist.counts}}}};
      if (thresholds.contains(t.name)) j["thresholds"] = thresholds[t.name];
      tensors.push_back(j);
    };
    for (const TensorStats& t : ms.weights) add(t, "weight");
    for (const TensorStats& t : ms.activations) add(t, "activation");
    results["stats"] = {{"samples", ms.samples}, {"tensors", tensors}};
    for (const TensorStats& t : ms.weights)
      say(fmt::format("  {:<14} actual [{:+.3f}, {:+.3f}]  3-sigma [{:+.3f}, {:+.3f}]  ({} is larger)", t.name, t.min, t.max,
                      t.sigma3_lo(), t.sigma3_hi(), t.sigma3_larger() ? "3-sigma" : "actual"));
    for (const TensorStats& t : ms.activations)
      say(fmt::format("  {:<14} actual [{:+.3f}, {:+.3f}]  3-sigma [{:+.3f}, {:+.3f}]  ({} is larger)", t.name, t.min, t.max,
                      t.sigma3_lo(), t.sigma3_hi(), t.sigma3_larger() ? "3-sigma" : "actual"));
  }

  // One PTQ configuration: quantize, evaluate in the engine and in the simulation, keep the figures.
  void ptq_one(const Tensor& calib, int wbits, int abits, const std::string& cal, bool per_channel,
               const std::string& requant, const std::string& rounding) {
    if (g_interrupted) return;
    PtqConfig pc;
    pc.calibrator = parse_calibrator(cal);
    pc.wbits = wbits, pc.abits = abits, pc.per_channel = per_channel, pc.requant = requant;
    pc.rounding = parse_rounding(rounding);
    std::string name = fmt::format("w{}a{} {} {}", wbits, abits, cal, per_channel ? "per-channel" : "per-tensor");
    if (requant != "fixedpoint" || rounding != "nearest") name += " " + requant + "/" + rounding;
    Json row = {{"name", name}, {"wbits", wbits}, {"abits", abits}, {"calibrator", cal}, {"per_channel", per_channel},
                {"requant", requant}, {"rounding", rounding}, {"abc_bases", 0}};
    try {
      auto t = std::chrono::steady_clock::now();
      QModel q = quantize_model(fp32, calib, pc);
      row["calibration_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
      row["weight_clip"] = q.info["weight_clip"];
      row["bias_correction"] = q.info["bias_correction"];
      Engine e(q);
      row["accuracy"] = engine_accuracy(e, test_set.images, test_set.labels);
      Tensor sim;
      simulate(q, test_set.images, sim);
      Tensor eng;
      e.run(test_set.images, eng);
      int agree = 0, correct = 0;
      for (int i = 0; i < test_set.size(); ++i) {
        const float *a = sim.data() + i * 10, *b = eng.data() + i * 10;
        int pa = static_cast<int>(std::max_element(a, a + 10) - a), pb = static_cast<int>(std::max_element(b, b + 10) - b);
        agree += pa == pb;
        correct += pa == test_set.labels[size_t(i)];
      }
      row["accuracy_simulated"] = static_cast<double>(correct) / test_set.size();
      row["mismatches"] = test_set.size() - agree;
      std::string path = out_dir + "/models/" + std::to_string(results["ptq"].size()) + ".safetensors";
      save_qmodel(path, q);
      row["model_bytes"] = std::filesystem::file_size(path);
      std::filesystem::remove(path);
      say(fmt::format("  {:<44} {:.2f}%  (simulation {:.2f}%, {} predictions differ)", name, 100 * row["accuracy"].get<double>(),
                      100 * row["accuracy_simulated"].get<double>(), row["mismatches"].get<int>()));
      if (wbits == 8 && abits == 8 && cal == "kl" && !per_channel && requant == "fixedpoint" && rounding == "nearest") {
        save_qmodel(out_dir + "/lenet5-w8a8.safetensors", q);
        analysis_model = q;
        have_analysis_model = true;
      }
      if (wbits == 4 && abits == 4 && per_channel && cal == "kl") w4a4_model = q, have_w4a4 = true;
    } catch (const Error& e) {
      row["error"] = e.what();
      say("  " + name + ": " + e.what());
    }
    results["ptq"].push_back(row);
  }

  QModel analysis_model, w4a4_model;
  bool have_analysis_model = false, have_w4a4 = false;

  void ptq() {
    const Json& p = cfg["ptq"];
    Tensor calib = first_images(train_set, p["samples"]);
    std::filesystem::create_directories(out_dir + "/models");
    for (const auto& bw : p["bit_widths"]) {
      auto [w, a] = bits_pair(bw, "ptq.bit_widths");
      for (const auto& g : p["granularity"])
        for (const auto& cal : p["calibrators"]) ptq_one(calib, w, a, cal, g == "per-channel", "fixedpoint", "nearest");
    }
    for (const auto& r : p["requant"])
      for (const auto& rd : p["rounding"])
        if (r != "fixedpoint" || rd != "nearest") ptq_one(calib, 8, 8, "kl", false, r, rd);
    for (const auto& bw : p["sweep"]) {
      auto [w, a] = bits_pair(bw, "ptq.sweep");
      ptq_one(calib, w, a, "kl", true, "fixedpoint", "nearest");
    }
    std::filesystem::remove(out_dir + "/models");
  }

  void qat() {
    const Json& c = cfg["qat"];
    auto run_one = [&](int wbits, int abits, int abc) {
      if (g_interrupted) return skip(fmt::format("qat w{}a{} abc {} (interrupted)", wbits, abits, abc));
      QatConfig qc;
      qc.wbits = wbits, qc.abits = abits, qc.abc_bases = abc, qc.epochs = c["epochs"], qc.lr = c["lr"];
      qc.ste = parse_ste(c["ste"].get<std::string>());
      qc.per_channel = true;
      qc.seed = cfg["train"]["seed"].get<uint64_t>();
      std::string name = abc ? fmt::format("ABC-Net M={} a{}", abc, abits) : fmt::format("w{}a{} QAT", wbits, abits);
      QatResult r = run_qat(clone_model(fp32), train_set, test_set, qc);
      Json row = r.to_json();
      row.update({{"name", name}, {"wbits", wbits}, {"abits", abits}, {"abc_bases", abc}, {"ste", c["ste"]}, {"epochs", qc.epochs}});
      say(fmt::format("  {:<22} {:.2f}% (fake quant {:.2f}%){}", name, 100 * r.accuracy, 100 * r.accuracy_fake_quant,
                      r.diverged ? " diverged: " + r.diverged_message : ""));
      results["qat"].push_back(row);
      if (r.has_model && wbits == 4 && abits == 4 && !abc) qat_model = r.qmodel, have_qat = true;
      save();
    };
    for (const auto& bw : c["bit_widths"]) {
      auto [w, a] = bits_pair(bw, "qat.bit_widths");
      run_one(w, a, 0);
    }
    for (const auto& m : c["abc_bases"]) run_one(8, 8, m.get<int>());
  }
  QModel qat_model;
  bool have_qat = false;

  void analysis() {
    Tensor x = first_images(test_set, cfg["analysis"]["images"]);
    auto add = [&](const std::string& name, const QModel& q) {
      results["sqnr"].push_back({{"config", name}, {"layers", layer_errors_json(layer_errors(fp32, q, x))}});
    };
    if (have_analysis_model) add("w8a8 kl per-tensor", analysis_model);
    if (have_w4a4) add("w4a4 kl per-channel", w4a4_model);
    if (have_qat) add("w4a4 QAT", qat_model);
    if (have_w4a4) {
      results["sensitivity"] = {{"bits", 4}, {"baseline_fp32", results["fp32_accuracy"]},
                                {"layers", sensitivity_json(sensitivity(fp32, w4a4_model, test_set))}};
    }
    for (const auto& s : results["sqnr"])
      for (const auto& l : s["layers"])
        say(fmt::format("  {:<22} {:<8} SQNR {:>6} dB  cosine {:.4f}", s["config"].get<std::string>(), l["name"].get<std::string>(),
                        l["sqnr_db"].is_number() ? fmt::format("{:.1f}", l["sqnr_db"].get<double>()) : "inf",
                        l["cosine"].get<double>()));
  }

  void bench() {
    const int batch = cfg["bench"]["batch"], windows = cfg["bench"]["windows"];
    auto row = [&](const char* precision, int b, const InferenceTiming& t) {
      results["bench"].push_back({{"precision", precision}, {"batch", b}, {"threads", threads()},
                                  {"images_per_second", t.images_per_second}, {"latency_us_p50", t.latency_us_p50},
                                  {"isa", isa_name(kernels().isa)}});
      say(fmt::format("  {:<5} batch {:3d}: {:>9.0f} images/s, batch-1 latency p50 {:.1f} us", precision, b,
                      t.images_per_second, t.latency_us_p50));
    };
    row("fp32", batch, time_inference([&](const Tensor& x, Tensor& y) { y = fp32.forward(x); }, fp32.input_shape, batch, windows));
    if (have_analysis_model) {
      Engine e(analysis_model);
      row("int8", batch, time_inference([&](const Tensor& x, Tensor& y) { e.run(x, y); }, analysis_model.input_shape, batch, windows));
    }
  }
};

struct RunOpts {
  std::string out = "lowbit-out", config;
  bool print_config = false, quiet = false;
};

void run_main(const RunOpts& o) {
  if (o.print_config) {
    std::printf("%s\n", default_config().dump(2).c_str());
    return;
  }
  Json cfg = default_config();
  if (!o.config.empty()) {
    Json user;
    try {
      user = Json::parse(read_file(o.config));
    } catch (const Json::parse_error& e) {
      throw Error("--config " + o.config + ": not valid JSON: " + e.what());
    }
    try {
      cfg = merge_config(cfg, user, "");
      check_config(cfg);
    } catch (const Error& e) {
      throw Error("--config " + o.config + ": " + e.what());
    }
  }
  std::filesystem::create_directories(o.out);
  if (access(o.out.c_str(), W_OK) != 0) throw Error("--out " + o.out + ": folder is not writable");
  set_threads(cfg["threads"]);
  Runner r;
  r.cfg = cfg, r.out_dir = o.out, r.quiet = o.quiet;
  r.results = {{"lowbit", {{"version", "0.1"}, {"isa", isa_name(kernels().isa)}, {"threads", threads()}}},
               {"config", cfg}, {"skipped", Json::array()}, {"ptq", Json::array()}, {"qat", Json::array()},
               {"sqnr", Json::array()}, {"bench", Json::array()}};
  r.save();  // fails early when the folder cannot be written
  std::signal(SIGINT, on_sigint);
  r.train_set = load_split(cfg["data"], true);
  r.test_set = load_split(cfg["data"], false);
  r.results["data"] = {{"dir", resolve_data_dir(cfg["data"])}, {"train_images", r.train_set.size()}, {"test_images", r.test_set.size()}};
  r.say(fmt::format("lowbit run: {} training and {} test images from {}; {} threads, {}; output in {}/",
                    r.train_set.size(), r.test_set.size(), resolve_data_dir(cfg["data"]), threads(), isa_name(kernels().isa), o.out));
  r.section("FP32 training", true, [&] { r.train_or_load(); });
  if (r.fp32.size() == 0) {
    r.save();
    throw Error("interrupted before a model was trained; nothing else to do");
  }
  r.results["fp32_accuracy"] = r.results["training"]["test_accuracy"];
  r.results["summary"] = summary_json(summarize(r.fp32));
  if (!o.quiet) std::fputs(("\n" + format_summary(summarize(r.fp32))).c_str(), stdout);
  r.section("statistics", cfg["stats"]["enabled"], [&] { r.stats(); });
  r.section("post-training quantization", cfg["ptq"]["enabled"], [&] { r.ptq(); });
  r.section("quantization-aware training", cfg["qat"]["enabled"], [&] { r.qat(); });
  r.section("per-layer error analysis", cfg["analysis"]["enabled"], [&] { r.analysis(); });
  r.section("speed", cfg["bench"]["enabled"], [&] { r.bench(); });
  r.save();
  r.say(fmt::format("\nwrote {0}/report.html, {0}/report.md and {0}/results.json in {1:.0f} s", o.out, r.elapsed()));
  if (g_interrupted) {
    std::string skipped;
    for (const auto& s : r.results["skipped"]) skipped += "\n  " + s.get<std::string>();
    throw Error("interrupted: the figures finished so far are in " + o.out + "/results.json; skipped:" + skipped);
  }
}

struct AnalyzeOpts {
  Common common;
  std::string fp32, quantized, data = "fashion-mnist";
  int images = 500;
  bool no_sensitivity = false;
};

void run_analyze(const AnalyzeOpts& o) {
  apply(o.common);
  if (o.images <= 0) throw Error("--images must be positive");
  Sequential m = load_model(o.fp32);
  QModel q = load_qmodel(o.quantized);
  Dataset test = load_split(o.data, false);
  const int n = std::min(o.images, test.size());
  Tensor x({n, 1, 32, 32});
  std::copy_n(test.images.data(), x.numel(), x.data());
  std::vector<LayerError> errs = layer_errors(m, q, x);
  std::printf("%-10s %10s %10s   (%d test images)\n", "layer", "SQNR dB", "cosine", n);
  for (const LayerError& e : errs) std::printf("%-10s %10.2f %10.5f\n", e.name.c_str(), e.sqnr_db, e.cosine);
  Json j = {{"layers", layer_errors_json(errs)}, {"images", n}};
  if (!o.no_sensitivity) {
    std::vector<LayerSensitivity> sens = sensitivity(m, q, test);
    std::printf("\naccuracy with only one layer quantized as in %s (FP32: %.2f%%):\n", o.quantized.c_str(), 100 * evaluate(m, test));
    for (const LayerSensitivity& s : sens) std::printf("%-10s %8.2f%%\n", s.name.c_str(), 100 * s.accuracy);
    j["sensitivity"] = sensitivity_json(sens);
  }
  write_json(o.common, j);
}

}  // namespace

void add_analyze_command(CLI::App& app) {
  auto* a = app.add_subcommand("analyze", "Per-layer SQNR and cosine of a quantized model against its FP32 source, and per-layer sensitivity");
  static AnalyzeOpts o;
  add_common(a, o.common);
  a->add_option("fp32", o.fp32, "FP32 model file")->required();
  a->add_option("quantized", o.quantized, "Quantized model file made from it")->required();
  a->add_option("--data", o.data, "Folder with the IDX files (or 'fashion-mnist')")->capture_default_str();
  a->add_option("--images", o.images, "Test images for the SQNR comparison")->capture_default_str();
  a->add_flag("--no-sensitivity", o.no_sensitivity, "Skip the one-layer-at-a-time accuracy sweep");
  a->callback([] { run_analyze(o); });
}

void add_run_command(CLI::App& app) {
  auto* r = app.add_subcommand("run", "The main job: train LeNet-5, quantize it every way, evaluate, benchmark, report");
  static RunOpts o;
  r->add_option("--out,-o", o.out, "Output folder for report.html, report.md, results.json")->capture_default_str();
  r->add_option("--config", o.config, "JSON file choosing the parts, data and hyperparameters (see --print-config)");
  r->add_flag("--print-config", o.print_config, "Print the default configuration (every key) and exit");
  r->add_flag("--quiet,-q", o.quiet, "No progress output");
  r->callback([] { run_main(o); });
}

}  // namespace lowbit::cli
