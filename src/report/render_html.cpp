// report.html: one self-contained page (inline CSS, inline SVG charts, no scripts, no external
// references) showing the tables of report_view.h plus a chart per section.
// Not here: chart geometry (svg_chart.cpp) or figure selection (report_view.cpp).
#include <algorithm>
#include <string>

#include <fmt/format.h>

#include "lowbit/report.h"
#include "report/report_view.h"
#include "report/svg_chart.h"

namespace lowbit {

using namespace report;

static const char* const kCss = R"CSS(
:root { --ink:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f5f6f8; --card:#ffffff; --accent:#4e79a7; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", Helvetica, Arial, sans-serif; }
main { max-width: 1280px; margin: 0 auto; padding: 28px 20px 64px; }
header h1 { font-size: 30px; margin: 0 0 6px; letter-spacing: -0.01em; }
header .sub { color: var(--muted); margin: 0 0 14px; }
.facts { display:flex; flex-wrap:wrap; gap:8px; margin: 0 0 18px; padding:0; list-style:none; }
.facts li { background:#fff; border:1px solid var(--line); border-radius:999px; padding:3px 12px; font-size:13px; }
.facts b { color: var(--muted); font-weight: 500; margin-right: 4px; }
.banner { background:#fff7e6; border:1px solid #f2b44b; border-radius:10px; padding:10px 16px; margin:0 0 16px; }
.cards { display:grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap:12px; }
.card { background:var(--card); border:1px solid var(--line); border-top:4px solid var(--accent); border-radius:10px;
  padding:12px 16px; }
.card .l { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.05em; }
.card .v { font-size:26px; font-weight:650; font-variant-numeric: tabular-nums; margin: 2px 0; }
.card .n { color:var(--muted); font-size:12.5px; overflow-wrap:anywhere; }
nav.toc { margin: 18px 0 0; font-size:14px; }
nav.toc a { color: var(--accent); text-decoration:none; margin-right: 14px; white-space:nowrap; }
nav.toc a:hover { text-decoration: underline; }
section { background:var(--card); border:1px solid var(--line); border-radius:12px; padding:18px 22px 20px;
  margin:18px 0; }
section h2 { font-size:20px; margin:0 0 10px; }
section h3 { font-size:16px; margin:18px 0 8px; }
p.note { color:var(--muted); font-size:13.5px; margin:4px 0 10px; }
.notrun { color:var(--muted); font-style:italic; }
.tw { overflow-x:auto; margin: 6px 0 12px; }
table { border-collapse:collapse; font-size:13px; font-variant-numeric: tabular-nums; }
th, td { padding:5px 9px; border-bottom:1px solid var(--line); text-align:left; white-space:nowrap; }
th { background:#f3f4f6; font-weight:600; font-size:12.5px; color:#374151; }
td.r, th.r { text-align:right; }
tbody tr:nth-child(even) td { background:#fafbfc; }
tbody tr:hover td { background:#eef4fb; }
.row { display:flex; flex-wrap:wrap; gap:0 32px; align-items:flex-start; }
.row > div { min-width: 0; }
.row h3 { margin-top: 10px; }
.charts { display:flex; flex-wrap:wrap; gap:14px 24px; align-items:flex-start; margin: 8px 0 6px; }
.charts > div { flex: 1 1 460px; min-width: 300px; }
svg.chart { display:block; max-width:100%; height:auto; font-family:inherit; }
.hists { display:grid; grid-template-columns:repeat(auto-fill, minmax(330px, 1fr)); gap:8px 16px; margin-top:8px; }
.hists svg.chart { width:100%; }
.toggle { font-size:13.5px; color:var(--muted); user-select:none; }
#loglin:checked ~ .hists .lin { display:none; }
#loglin:not(:checked) ~ .hists .log { display:none; }
details summary { cursor:pointer; font-weight:600; }
ul.notes { margin: 0; padding-left: 20px; }
footer { color:var(--muted); font-size:12.5px; text-align:center; margin-top:28px; }
@media (max-width: 640px) { main { padding: 16px 10px 40px; } section { padding: 14px 12px; } }
)CSS";

static std::string esc(const std::string& s) { return html_escape(s); }

static std::string html_table(const Table& t) {
  std::string s = "<div class=\"tw\"><table>\n<thead><tr>";
  for (size_t i = 0; i < t.head.size(); i++)
    s += fmt::format("<th{}>{}</th>", i < t.align.size() && t.align[i] == 'r' ? " class=\"r\"" : "", esc(t.head[i]));
  s += "</tr></thead>\n<tbody>\n";
  for (const auto& row : t.rows) {
    s += "<tr>";
    for (size_t i = 0; i < t.head.size(); i++)
      s += fmt::format("<td{}>{}</td>", i < t.align.size() && t.align[i] == 'r' ? " class=\"r\"" : "",
                       esc(i < row.size() ? row[i] : ""));
    s += "</tr>\n";
  }
  return s + "</tbody></table></div>\n";
}

// Blocks side by side, wrapping when the page is narrow.
static std::string row(const std::vector<std::string>& blocks) {
  std::string s = "<div class=\"row\">";
  for (const auto& b : blocks) s += "<div>" + b + "</div>";
  return s + "</div>\n";
}

static std::string not_run(const std::string& what) {
  return "<p class=\"notrun\">" + esc(what) + ": not run.</p>\n";
}

static std::string open_section(const char* id, const char* title) {
  return fmt::format("<section id=\"{}\">\n<h2>{}</h2>\n", id, esc(title));
}

static const char* method_color(const std::string& series) {
  if (series == "PTQ") return kPalette[0];
  if (series == "QAT") return kPalette[1];
  if (series == "ABC-Net (PTQ)") return kPalette[4];
  return kPalette[6];  // ABC-Net (QAT)
}

static std::string method_of(const char* kind, const json& e) {
  std::string m = kind[0] == 'p' ? "PTQ" : "QAT";
  return integer(e, "abc_bases").value_or(0) > 0 ? "ABC-Net (" + m + ")" : m;
}

// ---- sections ----

static std::string header_html(const json& r) {
  std::string h = "<header>\n<h1>lowbit report</h1>\n";
  h += "<p class=\"sub\">LeNet-5 trained in FP32, quantized post-training and with quantization-aware training, run "
       "integer-only.</p>\n<ul class=\"facts\">";
  for (const auto& [k, v] : run_facts(r)) h += fmt::format("<li><b>{}</b>{}</li>", esc(k), esc(v));
  h += "</ul>\n</header>\n";
  if (boolean(r, "interrupted").value_or(false))
    h += "<div class=\"banner\"><b>Interrupted.</b> This run stopped before it finished; sections without data "
         "were not run (see Notes).</div>\n";
  h += "<div class=\"cards\">\n";
  size_t i = 0;
  for (const auto& x : highlights(r))
    h += fmt::format(
        "<div class=\"card\" style=\"border-top-color:{}\"><div class=\"l\">{}</div><div class=\"v\">{}</div>"
        "<div class=\"n\">{}</div></div>\n",
        palette(i++), esc(x.label), esc(x.value), esc(x.note));
  h += "</div>\n<nav class=\"toc\">";
  for (const auto& [id, t] : std::vector<std::pair<const char*, const char*>>{
           {"summary", "Model"}, {"training", "Training"}, {"stats", "Statistics"}, {"accuracy", "Accuracy"},
           {"bitwidth", "Bit width"}, {"sqnr", "SQNR"}, {"sensitivity", "Sensitivity"}, {"qatloss", "QAT loss"},
           {"speed", "Speed"}, {"notes", "Notes"}})
    h += fmt::format("<a href=\"#{}\">{}</a>", id, t);
  h += "</nav>\n";
  Table cfg = config_table(r);
  h += "<section id=\"config\"><details><summary>Run configuration</summary>\n" +
       (cfg.rows.empty() ? not_run("Configuration") : html_table(cfg)) + "</details></section>\n";
  return h;
}

static std::string summary_html(const json& r) {
  std::string s = open_section("summary", "Model summary");
  Table t = summary_table(r), tot = summary_totals(r);
  if (t.rows.empty() && tot.rows.empty()) return s + not_run("Model summary") + "</section>\n";
  return s + row({html_table(t), html_table(tot)}) + "</section>\n";
}

static std::string training_html(const json& r) {
  std::string s = open_section("training", "Training");
  Table t = training_table(r), tot = training_totals(r);
  if (t.rows.empty() && tot.rows.empty()) return s + not_run("Training") + "</section>\n";
  LineSeries loss{"training loss", kPalette[2], {}, {}}, acc{"test accuracy", kPalette[0], {}, {}};
  for (const json& e : arr(at(r, "training"), "epochs")) {
    auto ep = num(e, "epoch");
    if (!ep) continue;
    if (auto v = num(e, "loss")) loss.x.push_back(*ep), loss.y.push_back(*v);
    if (auto v = num(e, "test_accuracy")) acc.x.push_back(*ep), acc.y.push_back(*v);
  }
  if (!loss.x.empty() || !acc.x.empty()) {
    LineChart lc;
    lc.title = "Training loss per epoch";
    lc.x_title = "epoch";
    lc.y_title = "loss";
    lc.series = {loss};
    lc.x_integer = true;
    LineChart ac = lc;
    ac.title = "Test accuracy per epoch";
    ac.y_title = "test accuracy";
    ac.series = {acc};
    ac.y_percent = true;
    s += "<div class=\"charts\"><div>" + svg_line_chart(lc) + "</div><div>" + svg_line_chart(ac) + "</div></div>\n";
  }
  return s + row({t.rows.empty() ? std::string() : html_table(t), html_table(tot)}) + "</section>\n";
}

static std::string stats_html(const json& r) {
  std::string s = open_section("stats", "Statistics");
  Table t = stats_table(r);
  if (t.rows.empty()) return s + not_run("Statistics") + "</section>\n";
  auto samples = integer(at(r, "stats"), "samples");
  s += "<p class=\"note\">";
  if (samples) s += esc(fmt::format("Observed over {} calibration images. ", fmt_int(samples)));
  s += "“Larger range” says whether the 3-sigma range (mean ± 3 std) or the actual range (min, max) is wider. "
       "Clip thresholds: the |x| each calibrator chose at 8 bits.</p>\n";
  Table th = thresholds_table(r);
  s += row({"<h3>Ranges</h3>\n" + html_table(t),
            th.rows.empty() ? std::string() : "<h3>Clip thresholds (8 bits)</h3>\n" + html_table(th)});

  struct Cal {
    const char* key;
    const char* name;
    const char* color;
  };
  const Cal cals[] = {{"max", "max", kPalette[0]},
                      {"3sigma", "3-sigma", kPalette[1]},
                      {"percentile", "percentile", kPalette[4]},
                      {"kl", "KL", kPalette[2]},
                      {"mse", "MSE", kPalette[6]}};
  std::vector<LegendItem> leg{{"actual range", "#111827", false}, {"3-sigma range", "#6b7280", true}};
  for (const auto& c : cals) leg.push_back({c.name + std::string(" clip"), c.color, false});
  std::string log_charts, lin_charts;
  for (const json& tj : arr(at(r, "stats"), "tensors")) {
    const json& hj = at(tj, "hist");
    HistogramChart h;
    h.title = str(tj, "name") + (str(tj, "kind").empty() ? "" : " (" + str(tj, "kind") + ")");
    auto lo = num(hj, "lo"), hi = num(hj, "hi");
    for (const json& c : arr(hj, "counts")) h.counts.push_back(num(c).value_or(0.0));
    if (!lo || !hi || h.counts.empty()) continue;
    h.lo = *lo;
    h.hi = *hi;
    auto mn = num(tj, "min"), mx = num(tj, "max");
    if (mn) h.markers.push_back({*mn, "#111827", false, "actual min"});
    if (mx) h.markers.push_back({*mx, "#111827", false, "actual max"});
    if (auto v = num(tj, "sigma3_lo")) h.markers.push_back({*v, "#6b7280", true, "3-sigma low"});
    if (auto v = num(tj, "sigma3_hi")) h.markers.push_back({*v, "#6b7280", true, "3-sigma high"});
    const json& thj = at(tj, "thresholds");
    bool signed_values = !mn || *mn < 0.0;
    for (const auto& c : cals) {
      auto v = num(thj, c.key);
      if (!v) continue;
      h.markers.push_back({*v, c.color, false, std::string(c.name) + " clip"});
      if (signed_values) h.markers.push_back({-*v, c.color, false, std::string(c.name) + " clip"});
    }
    h.log_y = true;
    log_charts += "<div class=\"log\">" + svg_histogram(h) + "</div>\n";
    h.log_y = false;
    lin_charts += "<div class=\"lin\">" + svg_histogram(h) + "</div>\n";
  }
  if (!log_charts.empty()) {
    s += "<h3>Histograms</h3>\n" + svg_legend(leg, 1180);
    s += "<input type=\"checkbox\" id=\"loglin\" checked> <label class=\"toggle\" for=\"loglin\">log-scale counts"
         "</label>\n<div class=\"hists\">\n" +
         log_charts + lin_charts + "</div>\n";
  }
  return s + "</section>\n";
}

static std::string accuracy_html(const json& r) {
  std::string s = open_section("accuracy", "Accuracy per configuration");
  Table p = ptq_table(r), q = qat_table(r);
  if (p.rows.empty() && q.rows.empty()) return s + not_run("PTQ and QAT") + "</section>\n";
  auto fp = fp32_accuracy(r);
  HBarChart c;
  c.title = "Test accuracy per configuration (engine, integer-only)";
  c.x_title = "accuracy";
  c.percent = true;
  c.ref = fp;
  c.ref_label = "FP32 " + fmt_pct(fp);
  std::vector<std::string> methods;
  for (const char* kind : {"ptq", "qat"})
    for (const json& e : arr(r, kind)) {
      auto a = num(e, "accuracy");
      if (!a) continue;
      std::string m = method_of(kind, e);
      if (std::find(methods.begin(), methods.end(), m) == methods.end()) methods.push_back(m);
      std::string name = str(e, "name").empty() ? m : str(e, "name");
      c.bars.push_back({name, *a, method_color(m), fmt_pct(a)});
    }
  std::stable_sort(c.bars.begin(), c.bars.end(), [](const HBar& x, const HBar& y) { return x.value > y.value; });
  for (const auto& m : methods) c.legend.push_back({m, method_color(m), false});
  if (!c.bars.empty()) s += svg_hbar_chart(c);
  s += fmt::format("<p class=\"note\">FP32 reference: {}. Drop = FP32 accuracy − configuration accuracy (percentage "
                   "points). Simulated = the float simulation of the same quantization; mismatches = test images "
                   "whose predicted class differs between the two.</p>\n",
                   esc(fmt_pct(fp)));
  s += "<h3>Post-training quantization</h3>\n" + (p.rows.empty() ? not_run("PTQ") : html_table(p));
  s += "<h3>Quantization-aware training</h3>\n" + (q.rows.empty() ? not_run("QAT") : html_table(q));
  return s + "</section>\n";
}

static std::string bitwidth_html(const json& r) {
  std::string s = open_section("bitwidth", "Accuracy vs bit width");
  BitwidthView v = bitwidth_view(r);
  if (v.labels.empty()) return s + not_run("Accuracy vs bit width") + "</section>\n";
  LineChart c;
  c.title = "Accuracy vs bit width: PTQ, QAT and ABC-Net";
  c.x_title = "weight / activation bits (ABC-Net: M binary weight bases)";
  c.y_title = "accuracy";
  c.y_percent = true;
  auto fp = fp32_accuracy(r);
  c.ref_y = fp;
  c.ref_label = "FP32 " + fmt_pct(fp);
  for (size_t i = 0; i < v.labels.size(); i++) c.x_labels.push_back({static_cast<double>(i), v.labels[i]});
  for (size_t k = 0; k < v.series.size(); k++) {
    LineSeries ls{v.series[k], method_color(v.series[k]), {}, {}};
    for (size_t i = 0; i < v.labels.size(); i++)
      if (v.acc[k][i]) ls.x.push_back(static_cast<double>(i)), ls.y.push_back(*v.acc[k][i]);
    c.series.push_back(ls);
  }
  c.width = 1180;
  c.height = 400;
  s += svg_line_chart(c);
  s += "<p class=\"note\">Each point is the best accuracy of that method at that bit width (over calibrators or STE "
       "variants).</p>\n";
  return s + html_table(bitwidth_table(v)) + "</section>\n";
}

static std::string sqnr_html(const json& r) {
  std::string s = open_section("sqnr", "Per-layer SQNR and cosine similarity");
  Table t = sqnr_table(r, false);
  if (t.rows.empty()) return s + not_run("Per-layer SQNR") + "</section>\n";
  GroupedBarChart c;
  c.title = "Per-layer SQNR (dB, higher is better)";
  c.y_title = "SQNR (dB)";
  c.categories.assign(t.head.begin() + 1, t.head.end());
  const size_t kMaxConfigs = 6;
  size_t n = 0;
  for (const json& cj : arr(r, "sqnr")) {
    if (n == kMaxConfigs) break;
    BarSeries bs{str(cj, "config"), palette(n), {}};
    for (const auto& layer : c.categories) {
      std::optional<double> v;
      for (const json& l : arr(cj, "layers"))
        if (str(l, "name") == layer) v = num(l, "sqnr_db");
      bs.values.push_back(v);
    }
    c.series.push_back(bs);
    n++;
  }
  c.value_decimals = n <= 3 ? 1 : -1;
  s += svg_grouped_bars(c);
  size_t total = arr(r, "sqnr").size();
  if (total > kMaxConfigs)
    s += fmt::format("<p class=\"note\">The chart shows the first {} of {} configurations; the tables show all.</p>\n",
                     kMaxConfigs, total);
  s += row({"<h3>SQNR (dB)</h3>\n" + html_table(t), "<h3>Cosine similarity</h3>\n" + html_table(sqnr_table(r, true))});
  return s + "</section>\n";
}

static std::string sensitivity_html(const json& r) {
  std::string s = open_section("sensitivity", "Sensitivity");
  Table t = sensitivity_table(r);
  if (t.rows.empty()) return s + not_run("Sensitivity") + "</section>\n";
  const json& sj = at(r, "sensitivity");
  auto bits = integer(sj, "bits");
  HBarChart c;
  c.title = bits ? fmt::format("Accuracy with only one layer quantized to {} bits", *bits)
                 : std::string("Accuracy with only one layer quantized");
  c.x_title = "accuracy";
  c.percent = true;
  auto base = num(sj, "baseline_fp32");
  c.ref = base;
  c.ref_label = "FP32 baseline " + fmt_pct(base);
  for (const json& l : arr(sj, "layers"))
    if (auto a = num(l, "accuracy")) c.bars.push_back({str(l, "name"), *a, kPalette[3], fmt_pct(a)});
  if (!c.bars.empty()) s += svg_hbar_chart(c);
  s += "<p class=\"note\">Every other layer stays FP32; a large drop marks a layer that needs more bits.</p>\n";
  return s + html_table(t) + "</section>\n";
}

static std::string qat_loss_html(const json& r) {
  std::string s = open_section("qatloss", "QAT loss curves");
  LineChart c;
  c.title = "QAT training loss per logged step";
  c.x_title = "logged step";
  c.y_title = "loss";
  c.markers = false;
  c.x_integer = true;
  c.width = 1180;
  c.height = 380;
  size_t i = 0;
  for (const json& q : arr(r, "qat")) {
    LineSeries ls{str(q, "name"), palette(i), {}, {}};
    size_t k = 0;
    for (const json& v : arr(q, "loss_curve")) {
      if (auto d = num(v)) ls.x.push_back(static_cast<double>(k)), ls.y.push_back(*d);
      k++;
    }
    if (ls.x.empty()) continue;
    c.series.push_back(ls);
    i++;
  }
  if (c.series.empty()) return s + not_run("QAT loss curves") + "</section>\n";
  s += svg_line_chart(c);
  s += "<p class=\"note\">The noise comes from the straight-through estimator's gradient mismatch and the "
       "mini-batches.</p>\n";
  return s + "</section>\n";
}

static std::string speed_html(const json& r) {
  std::string s = open_section("speed", "Speed");
  Table t = bench_table(r);
  if (t.rows.empty()) return s + not_run("Speed") + "</section>\n";
  GroupedBarChart tp;
  tp.title = "Throughput (images/s, higher is better)";
  tp.y_title = "images / s";
  tp.value_decimals = 0;
  tp.width = 560;
  std::vector<std::string> precisions;
  for (const json& b : arr(r, "bench")) {
    std::string cat = fmt::format("batch {} · {} thr", fmt_int(integer(b, "batch")), fmt_int(integer(b, "threads")));
    if (std::find(tp.categories.begin(), tp.categories.end(), cat) == tp.categories.end()) tp.categories.push_back(cat);
    std::string p = str(b, "precision");
    if (std::find(precisions.begin(), precisions.end(), p) == precisions.end()) precisions.push_back(p);
  }
  HBarChart lat;
  lat.title = "Batch-1 latency p50 (µs, lower is better)";
  lat.x_title = "µs";
  lat.width = 560;
  for (size_t k = 0; k < precisions.size(); k++) {
    const char* color = precisions[k] == "fp32" ? kPalette[0] : precisions[k] == "int8" ? kPalette[1] : palette(k + 2);
    BarSeries bs{precisions[k], color, std::vector<std::optional<double>>(tp.categories.size())};
    for (const json& b : arr(r, "bench")) {
      if (str(b, "precision") != precisions[k]) continue;
      std::string cat = fmt::format("batch {} · {} thr", fmt_int(integer(b, "batch")), fmt_int(integer(b, "threads")));
      size_t i = static_cast<size_t>(std::find(tp.categories.begin(), tp.categories.end(), cat) - tp.categories.begin());
      bs.values[i] = num(b, "images_per_second");
      auto l = num(b, "latency_us_p50");
      // latency_us_p50 is always the latency of one image (batch 1), whatever the row's batch.
      std::string label = fmt::format("{} · {} thr · {}", precisions[k], fmt_int(integer(b, "threads")), str(b, "isa"));
      bool seen = std::any_of(lat.bars.begin(), lat.bars.end(), [&](const HBar& h) { return h.label == label; });
      if (l && !seen) lat.bars.push_back({label, *l, color, fmt::format("{:.1f} µs", *l)});
    }
    tp.series.push_back(bs);
  }
  s += "<div class=\"charts\"><div>" + svg_grouped_bars(tp) + "</div>";
  if (!lat.bars.empty()) s += "<div>" + svg_hbar_chart(lat) + "</div>";
  s += "</div>\n<p class=\"note\">Speed-up = int8 images/s ÷ FP32 images/s at the same batch and threads.</p>\n";
  return s + html_table(t) + "</section>\n";
}

static std::string notes_html(const json& r) {
  std::string s = open_section("notes", "Notes");
  s += "<ul class=\"notes\">\n";
  bool interrupted = boolean(r, "interrupted").value_or(false);
  std::vector<std::string> skipped = skipped_list(r), missing = missing_sections(r);
  if (interrupted) s += "<li>The run was <b>interrupted</b>.</li>\n";
  for (const auto& x : skipped) s += "<li>Skipped: " + esc(x) + "</li>\n";
  for (const auto& x : missing) s += "<li>Not run (no data in results.json): " + esc(x) + "</li>\n";
  std::vector<std::string> probs = problems(r);
  for (const auto& x : probs) s += "<li>" + esc(x) + "</li>\n";
  if (!interrupted && skipped.empty() && missing.empty() && probs.empty())
    s += "<li>Every part of the run completed.</li>\n";
  return s + "</ul>\n</section>\n";
}

std::string render_html(const json& r) {
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                  "<title>lowbit report</title>\n<style>";
  h += kCss;
  h += "</style>\n</head>\n<body>\n<main>\n";
  h += header_html(r);
  h += summary_html(r);
  h += training_html(r);
  h += stats_html(r);
  h += accuracy_html(r);
  h += bitwidth_html(r);
  h += sqnr_html(r);
  h += sensitivity_html(r);
  h += qat_loss_html(r);
  h += speed_html(r);
  h += notes_html(r);
  std::string v = str(at(r, "lowbit"), "version");
  h += "<footer>Generated by lowbit" + (v.empty() ? std::string() : " " + esc(v)) +
       ". Every figure on this page comes from results.json next to it.</footer>\n";
  h += "</main>\n</body>\n</html>\n";
  return h;
}

}  // namespace lowbit
