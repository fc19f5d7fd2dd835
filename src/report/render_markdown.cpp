// report.md: the tables of report_view.h as GitHub-flavoured Markdown, histograms and loss curves
// as text sparklines (▁▂▃▄▅▆▇█). Same sections, same numbers as report.html, no charts.
// Not here: reading fields beyond what report_view.h offers, beyond the sparklines' raw arrays.
#include <algorithm>
#include <cmath>
#include <string>

#include <fmt/format.h>

#include "lowbit/report.h"
#include "report/report_view.h"

namespace lowbit {

using namespace report;

static std::string md_cell(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|')
      out += "\\|";
    else if (c == '\n' || c == '\r')
      out += ' ';
    else
      out += c;
  }
  return out.empty() ? " " : out;
}

static std::string md_table(const Table& t) {
  std::string s = "|";
  for (const auto& h : t.head) s += fmt::format(" {} |", md_cell(h));
  s += "\n|";
  for (size_t i = 0; i < t.head.size(); i++) s += (i < t.align.size() && t.align[i] == 'r') ? " ---: |" : " --- |";
  s += "\n";
  for (const auto& row : t.rows) {
    s += "|";
    for (size_t i = 0; i < t.head.size(); i++) s += fmt::format(" {} |", md_cell(i < row.size() ? row[i] : ""));
    s += "\n";
  }
  return s + "\n";
}

// Values squeezed into at most `width` characters of ▁..█ (groups summed for histograms, averaged
// for curves); log scale keeps the tails of a histogram visible.
static std::string sparkline(const std::vector<double>& v, size_t width, bool sum_groups, bool log_scale) {
  static const char* const kBars[8] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
  if (v.empty()) return "";
  size_t n = std::min(width, v.size());
  std::vector<double> g(n, 0.0);
  for (size_t i = 0; i < n; i++) {
    size_t a = i * v.size() / n, b = (i + 1) * v.size() / n;
    double s = 0.0;
    for (size_t k = a; k < b; k++) s += v[k];
    g[i] = sum_groups ? s : s / static_cast<double>(std::max<size_t>(b - a, 1));
    if (log_scale) g[i] = std::log10(1.0 + std::max(g[i], 0.0));
  }
  // Linear: min..max over levels 0..7. Log: empty groups at level 0, the others spread over 1..7
  // from the smallest non-empty group up.
  double lo = *std::min_element(g.begin(), g.end());
  double hi = *std::max_element(g.begin(), g.end());
  if (log_scale) {
    lo = hi;
    for (double x : g)
      if (x > 0.0) lo = std::min(lo, x);
  }
  // Position of x in [lo, hi] scaled to 0..steps; the middle when the range is empty or not finite
  // (values near 1e308 from a hostile JSON).
  auto scaled = [&](double x, int steps) {
    double f = (x - lo) / (hi - lo);
    return std::isfinite(f) && hi > lo ? static_cast<int>(std::lround(std::clamp(f, 0.0, 1.0) * steps)) : steps / 2;
  };
  std::string out;
  for (double x : g) {
    int level = log_scale ? (x <= 0.0 ? 0 : 1 + scaled(x, 6)) : scaled(x, 7);
    out += kBars[std::clamp(level, 0, 7)];
  }
  return out;
}

static std::vector<double> numbers(const json& a) {
  std::vector<double> v;
  for (const json& x : a)
    if (auto d = num(x)) v.push_back(*d);
  return v;
}

static std::string not_run(const char* what) { return fmt::format("_{}: not run._\n\n", what); }

std::string render_markdown(const json& r) {
  std::string md = "# lowbit report\n\n";
  std::string facts;
  for (const auto& [k, v] : run_facts(r)) facts += fmt::format("{}**{}:** {}", facts.empty() ? "" : " · ", k, v);
  md += facts + "\n\n";
  if (boolean(r, "interrupted").value_or(false))
    md += "> **Interrupted:** this run stopped before it finished; sections below without data were not run.\n\n";

  md += "## Highlights\n\n";
  Table h{{"Figure", "Value", "From"}, "lrl", {}};
  for (const auto& x : highlights(r)) h.rows.push_back({x.label, x.value, x.note});
  md += md_table(h);

  Table cfg = config_table(r);
  md += "### Run configuration\n\n" + (cfg.rows.empty() ? not_run("Configuration") : md_table(cfg));

  md += "## Model summary\n\n";
  Table s = summary_table(r);
  Table st = summary_totals(r);
  if (s.rows.empty() && st.rows.empty())
    md += not_run("Model summary");
  else
    md += md_table(s) + md_table(st);

  md += "## Training\n\n";
  Table tr = training_table(r);
  Table tt = training_totals(r);
  if (tr.rows.empty() && tt.rows.empty())
    md += not_run("Training");
  else
    md += (tr.rows.empty() ? std::string() : md_table(tr)) + md_table(tt);

  md += "## Statistics\n\n";
  Table stats = stats_table(r);
  if (stats.rows.empty()) {
    md += not_run("Statistics");
  } else {
    auto samples = integer(at(r, "stats"), "samples");
    if (samples) md += fmt::format("Observed over {} calibration images. ", fmt_int(samples));
    md += "Larger range: whether the 3-sigma range (mean ± 3 std) or the actual range (min, max) is wider.\n\n";
    md += md_table(stats);
    Table th = thresholds_table(r);
    if (!th.rows.empty()) md += "Clip thresholds |x| chosen by each calibrator at 8 bits:\n\n" + md_table(th);
    Table hist{{"Tensor", "Histogram range", "Histogram (log counts)"}, "lll", {}};
    for (const json& t : arr(at(r, "stats"), "tensors")) {
      const json& hj = at(t, "hist");
      std::vector<double> counts = numbers(arr(hj, "counts"));
      if (counts.empty()) continue;
      hist.rows.push_back({str(t, "name"), fmt::format("[{}, {}]", fmt_num(num(hj, "lo"), 4), fmt_num(num(hj, "hi"), 4)),
                           fmt::format("`{}`", sparkline(counts, 40, true, true))});
    }
    if (!hist.rows.empty()) md += md_table(hist);
  }

  md += "## Accuracy per configuration\n\n";
  Table ptq = ptq_table(r);
  Table qat = qat_table(r);
  md += "### Post-training quantization\n\n" + (ptq.rows.empty() ? not_run("PTQ") : md_table(ptq));
  md += "### Quantization-aware training\n\n" + (qat.rows.empty() ? not_run("QAT") : md_table(qat));
  md += fmt::format("FP32 reference: {}. Drop = FP32 accuracy − configuration accuracy, in percentage points.\n\n",
                    fmt_pct(fp32_accuracy(r)));

  md += "## Accuracy vs bit width\n\n";
  Table bw = bitwidth_table(bitwidth_view(r));
  md += bw.rows.empty() ? not_run("Accuracy vs bit width")
                        : "Best accuracy of each method at each bit width (over calibrators / STE variants).\n\n" +
                              md_table(bw);

  md += "## Per-layer SQNR\n\n";
  Table sq = sqnr_table(r, false);
  if (sq.rows.empty()) {
    md += not_run("Per-layer SQNR");
  } else {
    md += "SQNR in dB of each layer's output (quantized vs FP32; higher is better):\n\n" + md_table(sq);
    md += "Cosine similarity of each layer's output (1 = identical direction):\n\n" + md_table(sqnr_table(r, true));
  }

  md += "## Sensitivity\n\n";
  Table sens = sensitivity_table(r);
  md += sens.rows.empty() ? not_run("Sensitivity")
                          : "Accuracy when only one layer is quantized (all others FP32).\n\n" + md_table(sens);

  md += "## QAT loss curves\n\n";
  Table lc{{"Configuration", "Steps", "First loss", "Last loss", "Curve"}, "lrrrl", {}};
  for (const json& q : arr(r, "qat")) {
    std::vector<double> c = numbers(arr(q, "loss_curve"));
    if (c.empty()) continue;
    lc.rows.push_back({str(q, "name"), fmt_int(static_cast<int64_t>(c.size())), fmt_fixed(c.front(), 4),
                       fmt_fixed(c.back(), 4), fmt::format("`{}`", sparkline(c, 48, false, false))});
  }
  md += lc.rows.empty() ? not_run("QAT loss curves") : md_table(lc);

  md += "## Speed\n\n";
  Table b = bench_table(r);
  md += b.rows.empty() ? not_run("Speed") : md_table(b);

  md += "## Notes\n\n";
  std::vector<std::string> skipped = skipped_list(r);
  std::vector<std::string> missing = missing_sections(r);
  if (boolean(r, "interrupted").value_or(false)) md += "- The run was **interrupted**.\n";
  for (const auto& x : skipped) md += "- Skipped: " + x + "\n";
  for (const auto& x : missing) md += "- Not run (no data in results.json): " + x + "\n";
  std::vector<std::string> probs = problems(r);
  for (const auto& x : probs) md += "- " + x + "\n";
  if (skipped.empty() && missing.empty() && probs.empty() && !boolean(r, "interrupted").value_or(false))
    md += "- Every part of the run completed.\n";
  md += "\nAll figures come from results.json next to this file.\n";
  return md;
}

}  // namespace lowbit
