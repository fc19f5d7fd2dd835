// lowbit stats: per-layer weight and activation statistics of an FP32 model (seed 004, 2.1.2 and
// 2.3.2): min, max, mean, std, actual range against the 3-sigma range, and a histogram drawn as a
// sparkline. Not here: computing them (src/engine/stats.cpp, model_stats).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "cli.h"
#include "lowbit/data.h"
#include "lowbit/nn.h"
#include "lowbit/quantizer.h"

namespace lowbit::cli {

namespace {

struct StatsOpts {
  Common common;
  std::string model, data = "fashion-mnist";
  int samples = 1000, bins = 64;
};

// At most ~40 columns: groups of ceil(bins / 40) bins (a shorter last group is scaled up to the
// same width), drawn on a log scale so that the ReLU spike at 0 does not flatten the rest.
std::string sparkline(const std::vector<int64_t>& counts) {
  static const char* blocks[] = {"\u2581", "\u2582", "\u2583", "\u2584", "\u2585", "\u2586", "\u2587", "\u2588"};
  const size_t g = (counts.size() + 39) / 40;
  std::vector<double> cols;
  for (size_t b = 0; b < counts.size(); b += g) {
    const size_t e = std::min(counts.size(), b + g);
    double s = 0;
    for (size_t i = b; i < e; ++i) s += static_cast<double>(counts[i]);
    cols.push_back(s * static_cast<double>(g) / static_cast<double>(e - b));
  }
  const double top = *std::max_element(cols.begin(), cols.end());
  std::string out;
  for (double c : cols) {
    if (c <= 0 || top <= 0) {
      out += ' ';
      continue;
    }
    const double f = std::log1p(c) / std::log1p(top);
    out += blocks[std::clamp(static_cast<int>(std::lround(f * 7)), 0, 7)];
  }
  return out;
}

void print_tensor(const TensorStats& t) {
  std::string shape;
  for (size_t i = 0; i < t.shape.size(); ++i) shape += (i ? "x" : "") + std::to_string(t.shape[i]);
  std::printf("%-14s %-10s %-12s %lld values  mean %.6g  std %.6g\n", t.name.c_str(), t.layer_type.c_str(),
              shape.c_str(), static_cast<long long>(t.count), t.mean, t.std);
  std::printf("  actual range  [%.6g, %.6g], total %.6g\n", static_cast<double>(t.min), static_cast<double>(t.max),
              static_cast<double>(t.max) - t.min);
  std::printf("  3-sigma range [%.6g, %.6g], total %.6g  (3-sigma range %s than actual range)\n", t.sigma3_lo(),
              t.sigma3_hi(), 6 * t.std, t.sigma3_larger() ? "larger" : "smaller");
  std::printf("  %10.4g |%s| %.4g\n", static_cast<double>(t.min), sparkline(t.hist.counts).c_str(),
              static_cast<double>(t.max));
}

void run_stats(const StatsOpts& o) {
  apply(o.common);
  if (o.samples < 1) throw Error(fmt::format("--samples: must be >= 1, got {}", o.samples));
  if (o.bins < 1 || o.bins > 100000) throw Error(fmt::format("--bins: must be in 1..100000, got {}", o.bins));
  Sequential model = load_model(o.model);
  Dataset d = load_split(o.data, true, o.samples);
  ModelStats s = model_stats(model, d.images, o.bins);
  std::printf("statistics of %s (%s) on the first %d training images; histograms over [min, max] in %d bins "
              "(sparklines: log scale)\n\nweights\n",
              o.model.c_str(), model.architecture.c_str(), s.samples, s.bins);
  for (const TensorStats& t : s.weights) print_tensor(t);
  std::printf("\nactivations (layer outputs)\n");
  for (const TensorStats& t : s.activations) print_tensor(t);
  nlohmann::json j = stats_json(s);
  j["model"] = o.model;
  write_json(o.common, j);
}

}  // namespace

void add_stats_command(CLI::App& app) {
  auto* s = app.add_subcommand("stats", "Per-layer weight and activation statistics (range, 3-sigma, histograms)");
  static StatsOpts so;
  add_common(s, so.common);
  s->add_option("model", so.model, "FP32 model file")->required();
  s->add_option("--data", so.data, "Folder with the IDX files (or 'fashion-mnist')")->capture_default_str();
  s->add_option("--samples", so.samples, "Observe activations on the first N training images")->capture_default_str();
  s->add_option("--bins", so.bins, "Histogram bins (JSON; the sparkline merges them to ~40 columns)")
      ->capture_default_str();
  s->callback([] { run_stats(so); });
}

}  // namespace lowbit::cli
