// lowbit bench: inference (or training) speed of an FP32 or quantized model file on random inputs.
// Timing rules: lowbit/bench.h (the answer is computed and checked before timing).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

#include "cli.h"
#include "lowbit/bench.h"
#include "kernels/dispatch.h"
#include "lowbit/engine.h"
#include "lowbit/nn.h"
#include "lowbit/train.h"

namespace lowbit::cli {

namespace {

struct BenchOpts {
  Common common;
  std::string model;
  int batch = 256, windows = 5;
  bool train = false;
};

void put(nlohmann::json& j, const InferenceTiming& t) {
  j["images_per_second"] = t.images_per_second;
  j["latency_us_p50"] = t.latency_us_p50;
  j["latency_us_p90"] = t.latency_us_p90;
}

void run_bench(const BenchOpts& o) {
  apply(o.common);
  if (o.batch <= 0) throw Error("--batch must be positive, got " + std::to_string(o.batch));
  nlohmann::json j = {{"model", o.model}, {"batch", o.batch}, {"threads", threads()}, {"isa", isa_name(kernels().isa)}};
  if (model_kind(o.model) == "quantized") {
    if (o.train) throw Error(o.model + ": --train needs an FP32 model");
    QModel q = load_qmodel(o.model);
    Engine e(q);
    j["precision"] = "int8";
    j["task"] = "infer";
    j["plan"] = e.plan();
    put(j, time_inference([&](const Tensor& x, Tensor& y) { e.run(x, y); }, q.input_shape, o.batch, o.windows));
  } else if (!o.train) {
    Sequential m = load_model(o.model);
    j["precision"] = "fp32";
    j["task"] = "infer";
    put(j, time_inference([&](const Tensor& x, Tensor& y) { y = m.forward(x); }, m.input_shape, o.batch, o.windows));
  } else {
    Sequential m = load_model(o.model);
    Shape in = m.input_shape;
    in.insert(in.begin(), o.batch);
    Tensor x(in), d;
    Rng rng(1);
    for (int64_t i = 0; i < x.numel(); ++i) x[i] = rng.uniform(-1, 1);
    std::vector<uint8_t> labels(static_cast<size_t>(o.batch));
    for (auto& l : labels) l = static_cast<uint8_t>(rng.below(10));
    Optimizer opt(m, OptimConfig{});
    const size_t end = m.logits_end();
    auto step = [&] {
      m.forward(x, Sequential::Keep::backward);
      d.resize(m.activation(end).shape());
      softmax_cross_entropy(m.activation(end), labels.data(), &d);
      m.backward(d, end, /*accumulate=*/false);
      opt.step();
    };
    j["precision"] = "fp32";
    j["task"] = "train";
    j["images_per_second"] = median_rate(step, o.batch, o.windows, 0.2);
  }
  std::printf("%s: %s %s, batch %d, %d threads, %s: %.0f images/s", o.model.c_str(), j["task"].get<std::string>().c_str(),
              j["precision"].get<std::string>().c_str(), o.batch, threads(), isa_name(kernels().isa),
              j["images_per_second"].get<double>());
  if (j.contains("latency_us_p50")) std::printf("; batch-1 latency p50 %.2f us", j["latency_us_p50"].get<double>());
  std::printf("\n");
  if (j.contains("plan") && !o.common.quiet) std::printf("  %s\n", j["plan"].get<std::string>().c_str());
  write_json(o.common, j);
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto* b = app.add_subcommand("bench", "Inference (or --train) speed of a model: images/s and batch-1 latency");
  static BenchOpts o;
  add_common(b, o.common);
  b->add_option("model", o.model, "Model file")->required();
  b->add_option("--batch", o.batch, "Batch size")->capture_default_str();
  b->add_option("--windows", o.windows, "Timed windows (the median is reported)")->capture_default_str()->check(CLI::PositiveNumber);
  b->add_flag("--train", o.train, "Time training steps (SGD) instead of inference");
  b->callback([] { run_bench(o); });
}

}  // namespace lowbit::cli
