// Tests of lowbit's reports (include/lowbit/report.h): a realistic synthetic results.json with
// every section filled is rendered to Markdown and HTML and checked for content (every accuracy
// formatted, SVG charts per section, no external references, escaping); partial and wrongly typed
// results must render without throwing; write_reports writes three files or names the folder; and
// headless Chromium renders report.html to a non-blank screenshot (skipped without chromium).
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "lowbit/core.h"
#include "lowbit/report.h"
#include "test_util.h"

namespace {

using nlohmann::json;
using lowbit::test::TempDir;

// ---- fixture ----

// Histogram counts of a normal(mean, std) sample of n values over [lo, hi] in `bins` bins; with
// relu_spike > 0, that many extra values land in the bin holding 0 (a ReLU output).
json hist(double lo, double hi, double mean, double std, double n, int bins, double relu_spike = 0.0) {
  json counts = json::array();
  double w = (hi - lo) / bins;
  for (int i = 0; i < bins; i++) {
    double c = lo + (i + 0.5) * w;
    double z = (c - mean) / std;
    double v = n * w * std::exp(-0.5 * z * z) / (std * std::sqrt(2.0 * M_PI));
    if (relu_spike > 0.0 && c - w / 2 <= 0.0 && 0.0 < c + w / 2) v += relu_spike;
    if (relu_spike > 0.0 && c < 0.0) v = 0.0;
    counts.push_back(static_cast<int64_t>(std::llround(v)));
  }
  return {{"lo", lo}, {"hi", hi}, {"counts", counts}};
}

json tensor_stats(const std::string& name, const std::string& kind, double mn, double mx, double mean, double std,
                  bool relu, bool thresholds) {
  double lo3 = mean - 3 * std, hi3 = mean + 3 * std;
  json t = {{"name", name},
            {"kind", kind},
            {"min", mn},
            {"max", mx},
            {"mean", mean},
            {"std", std},
            {"sigma3_lo", lo3},
            {"sigma3_hi", hi3},
            {"larger", (hi3 - lo3) > (mx - mn) ? "3-sigma" : "actual"},
            {"hist", hist(mn, mx, relu ? 0.0 : mean, relu ? std * 1.5 : std, 50000.0, 96, relu ? 30000.0 : 0.0)}};
  if (thresholds) {
    double amax = std::max(std::fabs(mn), std::fabs(mx));
    t["thresholds"] = {{"max", amax},
                       {"3sigma", std::min(amax, std::fabs(mean) + 3 * std)},
                       {"percentile", amax * 0.81},
                       {"kl", amax * 0.62},
                       {"mse", amax * 0.55}};
  }
  return t;
}

json ptq(const std::string& name, int w, int a, const std::string& cal, bool pc, const std::string& requant,
         const std::string& rounding, int abc, double acc, double sim, int mism, int64_t bytes) {
  return {{"name", name},        {"wbits", w},         {"abits", a},         {"calibrator", cal},
          {"per_channel", pc},   {"requant", requant}, {"rounding", rounding}, {"abc_bases", abc},
          {"accuracy", acc},     {"accuracy_simulated", sim}, {"mismatches", mism},
          {"calibration_seconds", 0.8 + 0.1 * w},      {"model_bytes", bytes}};
}

json loss_curve(double start, double end, int steps, double noise, int seed) {
  json c = json::array();
  for (int k = 0; k < steps; k++) {
    double t = static_cast<double>(k) / steps;
    double wiggle = noise * (std::sin(k * 1.7 + seed) + 0.6 * std::sin(k * 0.37 + 2.0 * seed));
    c.push_back(end + (start - end) * std::exp(-5.0 * t) + wiggle);
  }
  return c;
}

json qat(const std::string& name, int w, int a, int abc, const std::string& ste, double acc, double fq, int seed) {
  return {{"name", name}, {"wbits", w}, {"abits", a}, {"abc_bases", abc}, {"ste", ste}, {"epochs", 2},
          {"accuracy", acc}, {"accuracy_fake_quant", fq}, {"ptq_accuracy", acc - 0.0123 * (9 - w)},
          {"loss_curve", loss_curve(0.9 - 0.05 * w, 0.32 + 0.02 * (8 - w), 80, 0.012 * (9 - w), seed)}};
}

json sqnr_cfg(const std::string& cfg, std::vector<double> db) {
  const char* layers[] = {"conv1", "conv2", "fc1", "fc2", "fc3"};
  json l = json::array();
  for (size_t i = 0; i < db.size(); i++)
    l.push_back({{"name", layers[i]}, {"sqnr_db", db[i]}, {"cosine", 1.0 - std::pow(10.0, -db[i] / 10.0) / 2.0}});
  return {{"config", cfg}, {"layers", l}};
}

// A whole run: LeNet-5 (bias-free) on Fashion-MNIST, every section filled.
json full_results() {
  json r;
  r["lowbit"] = {{"version", "0.1"}, {"isa", "avx512"}, {"threads", 2}};
  r["config"] = {{"model", "lenet5"}, {"epochs", 5},     {"batch", 64}, {"optimizer", "adam"}, {"lr", 0.001},
                 {"seed", 1},         {"samples", 1000}, {"note", "<b>&demo"},
                 {"qat", {{"epochs", 2}, {"lr", 1e-4}}}, {"wbits", {8, 6, 4, 3, 2}}};
  r["data"] = {{"dir", "/usr/share/datasets/fashion-mnist"}, {"train_images", 60000}, {"test_images", 10000}};
  auto layer = [](const char* n, const char* t, json k, json in, json out, int64_t p, int64_t m) {
    return json{{"name", n}, {"type", t}, {"kernel", k}, {"input_shape", in}, {"output_shape", out}, {"params", p},
                {"mult_adds", m}};
  };
  r["summary"] = {
      {"layers",
       {layer("conv1", "Conv2d", {6, 1, 5, 5}, {1, 1, 32, 32}, {1, 6, 28, 28}, 150, 117600),
        layer("relu1", "ReLU", nullptr, {1, 6, 28, 28}, {1, 6, 28, 28}, 0, 0),
        layer("pool1", "MaxPool2d", {2, 2}, {1, 6, 28, 28}, {1, 6, 14, 14}, 0, 0),
        layer("conv2", "Conv2d", {16, 6, 5, 5}, {1, 6, 14, 14}, {1, 16, 10, 10}, 2400, 240000),
        layer("relu2", "ReLU", nullptr, {1, 16, 10, 10}, {1, 16, 10, 10}, 0, 0),
        layer("pool2", "MaxPool2d", {2, 2}, {1, 16, 10, 10}, {1, 16, 5, 5}, 0, 0),
        layer("flatten", "Flatten", nullptr, {1, 16, 5, 5}, {1, 400}, 0, 0),
        layer("fc1", "Linear", {120, 400}, {1, 400}, {1, 120}, 48000, 48000),
        layer("relu3", "ReLU", nullptr, {1, 120}, {1, 120}, 0, 0),
        layer("fc2", "Linear", {84, 120}, {1, 120}, {1, 84}, 10080, 10080),
        layer("relu4", "ReLU", nullptr, {1, 84}, {1, 84}, 0, 0),
        layer("fc3", "Linear", {10, 84}, {1, 84}, {1, 10}, 840, 840)}},
      {"total_params", 61470},
      {"total_mult_adds", 416520},
      {"input_mb", 0.0},
      {"forward_backward_mb", 0.08},
      {"params_mb", 0.25},
      {"total_mb", 0.33}};
  json epochs = json::array();
  double losses[] = {0.6212, 0.4105, 0.3617, 0.3342, 0.3127};
  double accs[] = {0.8412, 0.8655, 0.8771, 0.8839, 0.8963};
  for (int e = 0; e < 5; e++)
    epochs.push_back({{"epoch", e + 1}, {"loss", losses[e]}, {"test_accuracy", accs[e]}, {"seconds", 14.1 + 0.2 * e}});
  r["training"] = {{"epochs", epochs}, {"test_accuracy", 0.8963}, {"images_per_second", 21345.6}, {"seconds", 71.3}};
  r["stats"] = {{"samples", 1000},
                {"tensors",
                 {tensor_stats("conv1.weight", "weight", -0.2922, 0.3268, 0.0091, 0.1384, false, false),
                  tensor_stats("conv2.weight", "weight", -0.8035, 0.4228, -0.0518, 0.1647, false, false),
                  tensor_stats("fc1.weight", "weight", -0.5456, 0.5944, -0.0142, 0.1382, false, false),
                  tensor_stats("fc2.weight", "weight", -1.0673, 0.2024, -0.1385, 0.1948, false, false),
                  tensor_stats("fc3.weight", "weight", -0.9012, 0.5311, -0.0410, 0.2264, false, false),
                  tensor_stats("input", "activation", -1.0, 0.9843, -0.7231, 0.5869, false, true),
                  tensor_stats("conv1", "activation", 0.0, 2.0076, 0.1186, 0.2880, true, true),
                  tensor_stats("conv2", "activation", 0.0, 4.3695, 0.1110, 0.4023, true, true),
                  tensor_stats("fc1", "activation", 0.0, 8.6363, 0.4561, 1.5839, true, true),
                  tensor_stats("fc2", "activation", 0.0, 8.3290, 1.2125, 2.2008, true, true),
                  tensor_stats("fc3", "activation", -24.0655, 6.6488, -13.5300, 8.8150, false, true)}}};
  const int64_t q8 = 63112, q4 = 33480;
  r["ptq"] = {ptq("w8a8 max per-tensor", 8, 8, "max", false, "fixedpoint", "nearest", 0, 0.8951, 0.8953, 4, q8),
              ptq("w8a8 3sigma per-tensor", 8, 8, "3sigma", false, "fixedpoint", "nearest", 0, 0.8893, 0.8890, 7, q8),
              ptq("w8a8 percentile per-tensor", 8, 8, "percentile", false, "fixedpoint", "nearest", 0, 0.8958, 0.8957,
                  3, q8),
              ptq("w8a8 kl per-tensor", 8, 8, "kl", false, "fixedpoint", "nearest", 0, 0.8960, 0.8961, 2, q8),
              ptq("w8a8 mse per-tensor", 8, 8, "mse", false, "fixedpoint", "nearest", 0, 0.8957, 0.8955, 3, q8),
              ptq("w8a8 kl per-channel", 8, 8, "kl", true, "fixedpoint", "nearest", 0, 0.8962, 0.8962, 1, q8 + 520),
              ptq("w8a8 kl floor", 8, 8, "kl", false, "fixedpoint", "floor", 0, 0.8921, 0.8925, 9, q8),
              ptq("w8a8 kl divide", 8, 8, "kl", false, "divide", "nearest", 0, 0.8949, 0.8944, 11, q8),
              ptq("w6a6 kl per-channel", 6, 6, "kl", true, "fixedpoint", "nearest", 0, 0.8911, 0.8914, 6, q8),
              ptq("w4a8 kl per-channel", 4, 8, "kl", true, "fixedpoint", "nearest", 0, 0.8702, 0.8699, 12, q4),
              ptq("w4a4 kl per-channel", 4, 4, "kl", true, "fixedpoint", "nearest", 0, 0.7810, 0.7824, 41, q4),
              ptq("w3a3 mse per-channel", 3, 3, "mse", true, "fixedpoint", "nearest", 0, 0.5523, 0.5541, 87, q4),
              ptq("w2a8 mse per-channel", 2, 8, "mse", true, "fixedpoint", "nearest", 0, 0.2211, 0.2209, 35, q4),
              ptq("ABC M=1 a8", 1, 8, "kl", false, "fixedpoint", "nearest", 1, 0.6120, 0.6133, 22, q4),
              ptq("ABC M=2 a8", 2, 8, "kl", false, "fixedpoint", "nearest", 2, 0.8012, 0.8020, 15, q4),
              ptq("ABC M=3 a8", 3, 8, "kl", false, "fixedpoint", "nearest", 3, 0.8611, 0.8608, 8, q4)};
  json q = {qat("w8a8 lsq", 8, 8, 0, "lsq", 0.8971, 0.8974, 1),    qat("w4a4 identity", 4, 4, 0, "identity", 0.8702, 0.8706, 2),
            qat("w4a4 clipped", 4, 4, 0, "clipped", 0.8735, 0.8731, 3), qat("w4a4 lsq", 4, 4, 0, "lsq", 0.8791, 0.8788, 4),
            qat("w3a3 lsq", 3, 3, 0, "lsq", 0.8512, 0.8519, 5),        qat("w2a8 lsq", 2, 8, 0, "lsq", 0.8123, 0.8135, 6),
            qat("ABC M=2 QAT", 2, 8, 2, "identity", 0.8655, 0.8650, 7), qat("ABC M=3 QAT", 3, 8, 3, "identity", 0.8801, 0.8803, 8)};
  q[0]["fp32_finetune_accuracy"] = 0.8968;
  r["qat"] = q;
  r["sqnr"] = {sqnr_cfg("w8a8 kl per-tensor", {41.2, 36.8, 34.1, 33.0, 31.7}),
               sqnr_cfg("w8a8 kl per-channel", {44.9, 38.2, 35.0, 33.9, 32.5}),
               sqnr_cfg("w4a4 kl per-channel", {19.3, 14.2, 11.8, 10.1, 8.6}),
               sqnr_cfg("w4a4 lsq", {22.7, 17.5, 15.1, 13.3, 12.4})};
  r["sensitivity"] = {{"bits", 4},
                      {"layers",
                       {{{"name", "conv1"}, {"accuracy", 0.8801}},
                        {{"name", "conv2"}, {"accuracy", 0.8877}},
                        {{"name", "fc1"}, {"accuracy", 0.8915}},
                        {{"name", "fc2"}, {"accuracy", 0.8940}},
                        {{"name", "fc3"}, {"accuracy", 0.8821}}}},
                      {"baseline_fp32", 0.8963}};
  auto bench = [](const char* p, int b, int t, double ips, double lat) {
    return json{{"precision", p}, {"batch", b}, {"threads", t}, {"images_per_second", ips}, {"latency_us_p50", lat},
                {"isa", "avx512"}};
  };
  r["bench"] = {bench("fp32", 1, 1, 8123.4, 118.2), bench("int8", 1, 1, 21544.0, 44.7),
                bench("fp32", 64, 2, 35120.0, 96.3), bench("int8", 64, 2, 120345.0, 31.9)};
  r["fp32_accuracy"] = 0.8963;
  r["fp32_model_bytes"] = 246200;
  r["skipped"] = json::array();
  r["interrupted"] = false;
  r["seconds"] = 463.2;
  return r;
}

// Every accuracy-valued field in the results, with where it was found.
void collect_accuracies(const json& j, const std::string& where, std::vector<std::pair<std::string, double>>& out) {
  static const std::set<std::string> keys = {"accuracy",           "test_accuracy",         "accuracy_simulated",
                                             "accuracy_fake_quant", "fp32_finetune_accuracy", "baseline_fp32",
                                             "fp32_accuracy",       "ptq_accuracy"};
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (keys.count(it.key()) && it->is_number()) out.push_back({where + "." + it.key(), it->get<double>()});
      collect_accuracies(*it, where + "." + it.key(), out);
    }
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); i++) collect_accuracies(j[i], where + "[" + std::to_string(i) + "]", out);
  }
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) n++;
  return n;
}

// The HTML of <section id="id"> ... </section>, or "" when absent.
std::string section(const std::string& html, const std::string& id) {
  size_t a = html.find("<section id=\"" + id + "\"");
  if (a == std::string::npos) return "";
  size_t b = html.find("</section>", a);
  return html.substr(a, b == std::string::npos ? std::string::npos : b - a);
}

// ---- content ----

TEST(Report, EveryAccuracyAppearsFormattedInBoth) {
  json r = full_results();
  std::string md = lowbit::render_markdown(r);
  std::string html = lowbit::render_html(r);
  std::vector<std::pair<std::string, double>> accs;
  collect_accuracies(r, "results", accs);
  ASSERT_GT(accs.size(), 40u);
  for (const auto& [where, v] : accs) {
    std::string want = fmt::format("{:.2f}%", v * 100.0);
    EXPECT_NE(md.find(want), std::string::npos) << where << " = " << v << ": '" << want << "' missing from report.md";
    EXPECT_NE(html.find(want), std::string::npos) << where << " = " << v << ": '" << want << "' missing from report.html";
  }
  // Spot checks written by hand (format and totals from the brief and DESIGN.md).
  for (const std::string& s : {std::string("89.63%"), std::string("61,470"), std::string("416,520"),
                               std::string("avx512")}) {
    EXPECT_NE(md.find(s), std::string::npos) << s;
    EXPECT_NE(html.find(s), std::string::npos) << s;
  }
  // Drop of the w4a4 PTQ entry: 0.8963 - 0.7810 = 11.53 pp; int8 speed-up at batch 64: 120345/35120 = 3.43x.
  EXPECT_NE(md.find("11.53 pp"), std::string::npos);
  EXPECT_NE(html.find("3.43×"), std::string::npos);
  // Model size ratio: 246200 / 63112 = 3.90x.
  EXPECT_NE(html.find("3.90×"), std::string::npos);
  // Best int8 is the QAT w8a8 lsq run (89.71%).
  EXPECT_NE(md.find("| Best int8 (w8a8) | 89.71% | w8a8 lsq"), std::string::npos) << md.substr(0, 1500);
}

TEST(Report, HtmlIsSelfContainedWithChartsPerSection) {
  json r = full_results();
  std::string html = lowbit::render_html(r);
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_EQ(html.find("url("), std::string::npos);
  EXPECT_EQ(html.find("@import"), std::string::npos);
  EXPECT_EQ(count(html, "<svg"), count(html, "</svg>"));
  EXPECT_EQ(count(html, "<section"), count(html, "</section>"));
  EXPECT_EQ(count(html, "<table>"), count(html, "</table>"));
  // Charts: section id -> minimum number of <svg>.
  const std::pair<const char*, size_t> want[] = {{"training", 2}, {"stats", 11 * 2}, {"accuracy", 1},
                                                 {"bitwidth", 1}, {"sqnr", 1},       {"sensitivity", 1},
                                                 {"qatloss", 1},  {"speed", 2}};
  size_t total = 0;
  for (const auto& [id, n] : want) {
    std::string s = section(html, id);
    ASSERT_FALSE(s.empty()) << "section " << id << " missing";
    EXPECT_GE(count(s, "<svg"), n) << "section " << id;
    EXPECT_EQ(s.find("not run"), std::string::npos) << "section " << id << " says not run";
    total += n;
  }
  EXPECT_GE(count(html, "<svg"), total);
  // The QAT loss chart has one line per QAT run; the bit-width chart one per method (4 here).
  EXPECT_EQ(count(section(html, "qatloss"), "<polyline"), r["qat"].size());
  EXPECT_EQ(count(section(html, "bitwidth"), "<polyline"), 4u);
  // Accuracy bar chart: one bar per PTQ and QAT configuration.
  EXPECT_EQ(count(section(html, "accuracy"), "<rect"), r["ptq"].size() + r["qat"].size());
  // Strings from the JSON are escaped.
  EXPECT_NE(html.find("&lt;b&gt;&amp;demo"), std::string::npos);
  EXPECT_EQ(html.find("<b>&demo"), std::string::npos);
}

TEST(Report, MarkdownTablesAndSparklines) {
  json r = full_results();
  std::string md = lowbit::render_markdown(r);
  EXPECT_EQ(md.find("not run"), std::string::npos) << md;
  for (const char* h : {"## Model summary", "## Training", "## Statistics", "## Accuracy per configuration",
                        "## Accuracy vs bit width", "## Per-layer SQNR", "## Sensitivity", "## QAT loss curves",
                        "## Speed", "## Notes"})
    EXPECT_NE(md.find(h), std::string::npos) << h;
  // One histogram sparkline per tensor, one loss sparkline per QAT run: lines holding block characters.
  size_t spark_rows = 0;
  size_t p = 0;
  while ((p = md.find("\n|", p)) != std::string::npos) {
    size_t e = md.find('\n', p + 1);
    std::string line = md.substr(p + 1, e - p - 1);
    if (line.find("█") != std::string::npos) spark_rows++;
    p = e;
  }
  EXPECT_EQ(spark_rows, r["stats"]["tensors"].size() + r["qat"].size());
  // Every SQNR value appears with one decimal.
  for (const json& c : r["sqnr"])
    for (const json& l : c["layers"]) {
      std::string want = fmt::format("{:.1f}", l["sqnr_db"].get<double>());
      EXPECT_NE(md.find(want), std::string::npos) << c["config"] << " " << l["name"] << " " << want;
    }
  // A diverged QAT run and its conversion notes show in the Notes.
  r["qat"][1]["diverged"] = true;
  r["qat"][1]["diverged_message"] = "loss NaN at step 130; kept epoch 1";
  r["qat"][2]["notes"] = {"fc3 kept at 8 bits"};
  md = lowbit::render_markdown(r);
  EXPECT_NE(md.find("- QAT w4a4 identity diverged: loss NaN at step 130; kept epoch 1"), std::string::npos);
  EXPECT_NE(md.find("- QAT w4a4 clipped: fc3 kept at 8 bits"), std::string::npos);
  EXPECT_EQ(md.find("Every part of the run completed"), std::string::npos);
  // A pipe in a name cannot break a table row.
  r["ptq"][0]["name"] = "a|b";
  md = lowbit::render_markdown(r);
  EXPECT_NE(md.find("a\\|b"), std::string::npos);
}

TEST(Report, MissingSectionsRenderAsNotRunAndListSkipped) {
  json r = full_results();
  for (const char* k : {"stats", "qat", "sqnr", "sensitivity", "bench", "summary"}) r.erase(k);
  r["skipped"] = {"qat (--skip-qat)", "bench: interrupted"};
  r["interrupted"] = true;
  r["ptq"].push_back({{"name", "w2a2 kl"}, {"wbits", 2}, {"abits", 2}, {"error", "fc3: bias <overflow>"}});
  std::string md = lowbit::render_markdown(r);
  std::string html = lowbit::render_html(r);
  EXPECT_NE(md.find("PTQ w2a2 kl failed: fc3: bias <overflow>"), std::string::npos);
  EXPECT_NE(html.find("PTQ w2a2 kl failed: fc3: bias &lt;overflow&gt;"), std::string::npos);
  for (const std::string& s : {std::string("qat (--skip-qat)"), std::string("bench: interrupted")}) {
    EXPECT_NE(md.find(s), std::string::npos) << s;
    EXPECT_NE(html.find(s), std::string::npos) << s;
  }
  for (const char* title : {"Statistics", "Quantization-aware training", "Per-layer SQNR", "Sensitivity", "Speed",
                            "Model summary"}) {
    std::string want = std::string("Not run (no data in results.json): ") + title;
    EXPECT_NE(md.find(want), std::string::npos) << want;
    EXPECT_NE(html.find(want), std::string::npos) << want;
  }
  for (const char* id : {"stats", "sqnr", "sensitivity", "qatloss", "speed", "summary"}) {
    std::string s = section(html, id);
    EXPECT_NE(s.find("not run"), std::string::npos) << id;
    EXPECT_EQ(s.find("<svg"), std::string::npos) << id;
  }
  EXPECT_NE(md.find("**interrupted**"), std::string::npos);
  EXPECT_NE(html.find("Interrupted."), std::string::npos);
  // What remains still shows.
  EXPECT_NE(md.find("78.10%"), std::string::npos);
  EXPECT_NE(section(html, "accuracy").find("<svg"), std::string::npos);

  // An empty object: everything not run, nothing thrown.
  md = lowbit::render_markdown(json::object());
  html = lowbit::render_html(json::object());
  EXPECT_GE(count(md, "not run"), 9u);
  EXPECT_GE(count(html, "not run"), 9u);
}

TEST(Report, WrongTypesAreTreatedAsMissing) {
  // Whole-document wrong types.
  for (const json& v : {json(), json(3), json("x"), json::array({1, 2}), json(true)}) {
    EXPECT_NO_THROW(lowbit::render_markdown(v)) << v.dump();
    EXPECT_NO_THROW(lowbit::render_html(v)) << v.dump();
  }
  // Each node of the fixture (objects fully, arrays through their first element) replaced in turn
  // by values of other types.
  // Short histograms keep the ~1,000 renders below fast.
  json small = full_results();
  for (json& t : small["stats"]["tensors"]) t["hist"]["counts"] = {3, 70, 1000, 80, 0, 2};
  const json full = small;
  const json bad[] = {json("oops"), json(),     json::array(), json::object(),    json(false),
                      json(3.5),    json(-1.7e308), json(1.7e308), json(std::nan(""))};
  std::vector<json::json_pointer> nodes;
  std::function<void(const json&, const json::json_pointer&)> walk = [&](const json& j, const json::json_pointer& p) {
    if (!p.empty()) nodes.push_back(p);
    if (j.is_object())
      for (auto it = j.begin(); it != j.end(); ++it) walk(*it, p / it.key());
    else if (j.is_array() && !j.empty())
      walk(j[0], p / 0);
  };
  walk(full, json::json_pointer());
  ASSERT_GT(nodes.size(), 100u);
  // Markdown sees every bad value at every node; HTML (slower) three of them, rotating per node.
  size_t renders = 0;
  for (size_t n = 0; n < nodes.size(); n++) {
    const auto& p = nodes[n];
    json r = full;
    for (size_t k = 0; k < std::size(bad); k++) {
      const json& b = bad[k];
      r[p] = b;
      std::string md, html;
      ASSERT_NO_THROW(md = lowbit::render_markdown(r)) << p.to_string() << " = " << b.dump();
      ASSERT_FALSE(md.empty());
      renders++;
      if ((k + n) % 3 != 0) continue;
      ASSERT_NO_THROW(html = lowbit::render_html(r)) << p.to_string() << " = " << b.dump();
      ASSERT_EQ(count(html, "<svg"), count(html, "</svg>")) << p.to_string() << " = " << b.dump();
      renders++;
    }
  }
  EXPECT_GE(renders, 1000u);
  // Wrong-typed accuracy shows as missing, not as a made-up number.
  json r = full;
  r["ptq"][3]["accuracy"] = "0.5";
  std::string md = lowbit::render_markdown(r);
  EXPECT_EQ(md.find("50.00%"), std::string::npos);
  EXPECT_NE(md.find("| w8a8 kl per-tensor | w8a8 | kl | per-tensor | fixedpoint · nearest | — | — | 89.61% |"),
            std::string::npos);
  // Invalid UTF-8 in a string must not throw anywhere (results.json is dumped with replacement).
  r["config"]["note"] = std::string("bad \xff\xfe utf8");
  TempDir d;
  EXPECT_NO_THROW(lowbit::write_reports(r, d.path));
}

// ---- files ----

TEST(Report, WriteReportsWritesThreeFiles) {
  TempDir d;
  std::string dir = d.file("out/nested");
  json r = full_results();
  lowbit::write_reports(r, dir);
  for (const char* f : {"results.json", "report.md", "report.html"})
    EXPECT_TRUE(lowbit::test::file_exists(dir + "/" + f)) << f;
  EXPECT_EQ(json::parse(lowbit::test::slurp(dir + "/results.json")), r);
  EXPECT_EQ(lowbit::test::slurp(dir + "/report.md"), lowbit::render_markdown(r));
  EXPECT_EQ(lowbit::test::slurp(dir + "/report.html"), lowbit::render_html(r));
  // No temp files left behind.
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) n++;
  EXPECT_EQ(n, 3u);
}

TEST(Report, WriteReportsNamesTheFolderOnError) {
  TempDir d;
  std::string file = d.file("plain-file");
  lowbit::test::write_bytes(file, {'x'});
  for (const std::string& dir : {file, file + "/sub"}) {
    try {
      lowbit::write_reports(full_results(), dir);
      ADD_FAILURE() << "no error for folder " << dir;
    } catch (const lowbit::Error& e) {
      EXPECT_NE(std::string(e.what()).find(dir), std::string::npos) << e.what();
    }
  }
  if (geteuid() != 0) {  // root ignores permissions
    std::string ro = d.file("readonly");
    std::filesystem::create_directory(ro);
    std::filesystem::permissions(ro, std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
    try {
      lowbit::write_reports(full_results(), ro);
      ADD_FAILURE() << "no error for read-only folder " << ro;
    } catch (const lowbit::Error& e) {
      EXPECT_NE(std::string(e.what()).find(ro), std::string::npos) << e.what();
    }
    std::filesystem::permissions(ro, std::filesystem::perms::owner_all);
  }
}

// ---- headless Chromium ----

struct Image {
  uint32_t width = 0, height = 0;
  std::vector<uint8_t> rgb;  // width * height * 3
};

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Minimal PNG decoder for Chromium's screenshots: 8-bit RGB or RGBA, not interlaced.
// Returns an empty image (width 0) and sets err on anything else.
Image decode_png(const std::string& bytes, std::string& err) {
  Image img;
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  if (bytes.size() < 8 || std::memcmp(p, sig, 8) != 0) return err = "not a PNG", Image{};
  size_t pos = 8;
  uint32_t w = 0, h = 0;
  int channels = 0;
  std::string idat;
  while (pos + 12 <= bytes.size()) {
    uint32_t len = be32(p + pos);
    std::string type(bytes.data() + pos + 4, 4);
    if (pos + 12 + len > bytes.size()) return err = "truncated chunk " + type, Image{};
    const uint8_t* d = p + pos + 8;
    if (type == "IHDR") {
      w = be32(d);
      h = be32(d + 4);
      if (d[8] != 8 || (d[9] != 2 && d[9] != 6) || d[12] != 0)
        return err = fmt::format("unsupported PNG: depth {} color type {} interlace {}", d[8], d[9], d[12]), Image{};
      channels = d[9] == 6 ? 4 : 3;
    } else if (type == "IDAT") {
      idat.append(reinterpret_cast<const char*>(d), len);
    } else if (type == "IEND") {
      break;
    }
    pos += 12 + len;
  }
  if (w == 0 || h == 0 || channels == 0) return err = "no IHDR", Image{};
  size_t stride = size_t{w} * static_cast<size_t>(channels);
  std::vector<uint8_t> raw(size_t{h} * (stride + 1));
  uLongf raw_len = raw.size();
  if (uncompress(raw.data(), &raw_len, reinterpret_cast<const Bytef*>(idat.data()), idat.size()) != Z_OK ||
      raw_len != raw.size())
    return err = "zlib inflate failed", Image{};
  std::vector<uint8_t> cur(stride), prev(stride, 0);
  img.width = w;
  img.height = h;
  img.rgb.resize(size_t{w} * h * 3);
  for (uint32_t y = 0; y < h; y++) {
    const uint8_t* row = raw.data() + size_t{y} * (stride + 1);
    uint8_t filter = row[0];
    for (size_t i = 0; i < stride; i++) {
      int a = i >= static_cast<size_t>(channels) ? cur[i - static_cast<size_t>(channels)] : 0;
      int b = prev[i];
      int c = i >= static_cast<size_t>(channels) ? prev[i - static_cast<size_t>(channels)] : 0;
      int x = row[1 + i];
      int pred = 0;
      switch (filter) {
        case 0: pred = 0; break;
        case 1: pred = a; break;
        case 2: pred = b; break;
        case 3: pred = (a + b) / 2; break;
        case 4: {
          int pp = a + b - c, pa = std::abs(pp - a), pb = std::abs(pp - b), pc = std::abs(pp - c);
          pred = (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
          break;
        }
        default: return err = fmt::format("bad filter {} in row {}", filter, y), Image{};
      }
      cur[i] = static_cast<uint8_t>((x + pred) & 0xff);
    }
    for (uint32_t x = 0; x < w; x++)
      for (int k = 0; k < 3; k++)
        img.rgb[(size_t{y} * w + x) * 3 + static_cast<size_t>(k)] = cur[size_t{x} * static_cast<size_t>(channels) + static_cast<size_t>(k)];
    std::swap(cur, prev);
  }
  return img;
}

TEST(Report, ChromiumRendersCharts) {
  const char* chromium = "/usr/bin/chromium";
  if (!std::filesystem::exists(chromium))
    GTEST_SKIP() << chromium << " is absent: install Debian's chromium (scripts/setup.sh --report) to run this test";
  TempDir d;
  lowbit::write_reports(full_results(), d.path);
  std::string html = lowbit::test::slurp(d.file("report.html"));
  std::filesystem::create_directory(d.file("profile"));
  // One run takes the screenshot and prints the parsed DOM (stdout) at once.
  std::string cmd = fmt::format(
      "timeout 60 {} --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
      "--disable-background-networking --disable-component-update --disable-sync --user-data-dir={} "
      "--screenshot={} --dump-dom --window-size=1280,4000 file://{} > {} 2> {}",
      chromium, d.file("profile"), d.file("shot.png"), d.file("report.html"), d.file("dom.html"), d.file("log.txt"));
  auto t0 = std::chrono::steady_clock::now();
  int rc = std::system(cmd.c_str());
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(rc, 0) << cmd << "\n" << lowbit::test::slurp(d.file("log.txt"));
  ASSERT_TRUE(lowbit::test::file_exists(d.file("shot.png"))) << cmd << "\n" << lowbit::test::slurp(d.file("log.txt"));
  std::string err;
  Image img = decode_png(lowbit::test::slurp(d.file("shot.png")), err);
  ASSERT_TRUE(err.empty()) << err;
  EXPECT_EQ(img.width, 1280u);
  EXPECT_EQ(img.height, 4000u);
  // Not a blank page: many distinct colors (anti-aliased text and charts), and the chart colors
  // present as solid fills: the accuracy bars (PTQ #4e79a7) and the histogram bars (#94a3b8).
  std::vector<bool> seen(size_t{1} << 24, false);
  size_t colors = 0, blue = 0, hist_grey = 0;
  for (size_t i = 0; i + 2 < img.rgb.size(); i += 3) {
    uint32_t c = (uint32_t{img.rgb[i]} << 16) | (uint32_t{img.rgb[i + 1]} << 8) | img.rgb[i + 2];
    if (!seen[c]) seen[c] = true, colors++;
    if (c == 0x4e79a7) blue++;
    if (c == 0x94a3b8) hist_grey++;
  }
  EXPECT_GT(colors, 500u);
  EXPECT_GT(blue, 2000u) << "accuracy bars (#4e79a7) not found in the screenshot";
  EXPECT_GT(hist_grey, 2000u) << "histogram bars (#94a3b8) not found in the screenshot";

  // The parsed DOM keeps every SVG chart (nothing dropped by the HTML parser).
  std::string dom = lowbit::test::slurp(d.file("dom.html"));
  EXPECT_EQ(count(dom, "<svg"), count(html, "<svg")) << lowbit::test::slurp(d.file("log.txt"));
  EXPECT_GE(count(dom, "<svg"), 30u);
  std::printf("chromium screenshot took %.1f s\n", secs);
}

}  // namespace
