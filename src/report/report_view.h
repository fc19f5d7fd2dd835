// The shared middle of the reports: tolerant reads of results.json, number formatting, and the
// tables and chart series both renderers show (so report.md and report.html hold the same tables).
// Not here: Markdown or HTML syntax (render_markdown.cpp, render_html.cpp) or SVG (svg_chart.*).
//
// Tolerance rule: a field that is absent or of the wrong type is "missing" (std::nullopt, an empty
// string, an empty array); nothing here throws on any JSON value.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace lowbit::report {

using nlohmann::json;

// ---- tolerant access ----

// j[key] when j is an object holding key; otherwise a null value.
const json& at(const json& j, const char* key);
// The array / object at j[key], or an empty one.
const json& arr(const json& j, const char* key);
const json& obj(const json& j, const char* key);
// A finite number (not a bool); nullopt otherwise.
std::optional<double> num(const json& v);
std::optional<double> num(const json& j, const char* key);
// An integer-valued number; nullopt otherwise (also for 3.5 or bool).
std::optional<int64_t> integer(const json& j, const char* key);
// A number rounded to an integer; nullopt when missing or beyond +-9e15.
std::optional<int64_t> rounded(std::optional<double> v);
// A string; "" otherwise.
std::string str(const json& j, const char* key);
std::optional<bool> boolean(const json& j, const char* key);

// ---- formatting ----

std::string fmt_pct(std::optional<double> fraction);        // 0.89634 -> "89.63%", missing -> "—"
std::string fmt_pp(std::optional<double> fraction);         // signed percentage points: "-0.12 pp"
std::string fmt_int(std::optional<int64_t> v);              // 61470 -> "61,470"
std::string fmt_num(std::optional<double> v, int digits);   // %.{digits}g, missing -> "—"
std::string fmt_fixed(std::optional<double> v, int decimals);
std::string fmt_seconds(std::optional<double> s);           // "42.1 s", "3 min 05 s", "1 h 02 min"
std::string fmt_bytes(std::optional<int64_t> b);            // "241.9 KiB"
std::string fmt_shape(const json& shape);                   // [1, 6, 28, 28] or "—"
std::string fmt_value(const json& v);                       // any JSON value as short text
extern const char* const kMissing;                          // "—"

// ---- tables ----

struct Table {
  std::vector<std::string> head;
  std::string align;                              // one 'l' or 'r' per column
  std::vector<std::vector<std::string>> rows;     // plain text cells (renderers escape)
};

struct Highlight {
  std::string label;
  std::string value;
  std::string note;  // where the figure comes from
};

std::vector<std::pair<std::string, std::string>> run_facts(const json& r);  // header line items
std::vector<Highlight> highlights(const json& r);
Table config_table(const json& r);
Table summary_table(const json& r);
Table summary_totals(const json& r);
Table training_table(const json& r);
Table training_totals(const json& r);
Table stats_table(const json& r);       // ranges per tensor
Table thresholds_table(const json& r);  // 8-bit clip threshold of each calibrator (activations)
Table ptq_table(const json& r);
Table qat_table(const json& r);
Table sqnr_table(const json& r, bool cosine);  // rows: configs, columns: layers
Table sensitivity_table(const json& r);
Table bench_table(const json& r);

// Accuracy vs bit width: x = config labels (w8a8, ..., then ABC M=k), one series per method.
struct BitwidthView {
  std::vector<std::string> labels;
  std::vector<std::string> series;                        // "PTQ", "QAT", "ABC-Net (PTQ)", ...
  std::vector<std::vector<std::optional<double>>> acc;    // [series][label], best accuracy
};
BitwidthView bitwidth_view(const json& r);
Table bitwidth_table(const BitwidthView& v);

// FP32 accuracy: results.fp32_accuracy, else training.test_accuracy.
std::optional<double> fp32_accuracy(const json& r);

// Sections of the report: key in results.json, title, anchor.
struct Section {
  const char* key;
  const char* title;
};
extern const Section kSections[];
extern const int kSectionCount;
// Sections whose key is absent or empty in r (titles), and the run's own "skipped" list.
std::vector<std::string> missing_sections(const json& r);
std::vector<std::string> skipped_list(const json& r);
// Per-configuration problems and remarks: PTQ/QAT entries with an "error", QAT runs that diverged,
// QAT conversion "notes".
std::vector<std::string> problems(const json& r);

}  // namespace lowbit::report
