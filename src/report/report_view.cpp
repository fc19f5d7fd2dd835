// Tolerant reads of results.json, number formatting, and the tables both reports show.
// Not here: Markdown/HTML/SVG syntax. No figure is computed here beyond selection (the best
// accuracy of a group) and labelled display differences/ratios (drop vs FP32, speed-up, size).
#include "report/report_view.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>

#include <fmt/format.h>

namespace lowbit::report {

const char* const kMissing = "—";

const Section kSections[] = {
    {"config", "Configuration"},
    {"summary", "Model summary"},
    {"training", "Training"},
    {"stats", "Statistics"},
    {"ptq", "Post-training quantization"},
    {"qat", "Quantization-aware training"},
    {"sqnr", "Per-layer SQNR"},
    {"sensitivity", "Sensitivity"},
    {"bench", "Speed"},
};
const int kSectionCount = static_cast<int>(sizeof(kSections) / sizeof(kSections[0]));

// ---- tolerant access ----

static const json& null_json() {
  static const json v;
  return v;
}

const json& at(const json& j, const char* key) {
  if (!j.is_object()) return null_json();
  auto it = j.find(key);
  return it == j.end() ? null_json() : *it;
}

const json& arr(const json& j, const char* key) {
  static const json empty = json::array();
  const json& v = at(j, key);
  return v.is_array() ? v : empty;
}

const json& obj(const json& j, const char* key) {
  static const json empty = json::object();
  const json& v = at(j, key);
  return v.is_object() ? v : empty;
}

std::optional<double> num(const json& v) {
  if (!v.is_number()) return std::nullopt;
  double d = v.get<double>();
  if (!std::isfinite(d)) return std::nullopt;
  return d;
}

std::optional<double> num(const json& j, const char* key) { return num(at(j, key)); }

std::optional<int64_t> integer(const json& j, const char* key) {
  const json& v = at(j, key);
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    double d = v.get<double>();
    // A float with an integral value (61470.0) still counts; 3.5, NaN or 1e30 do not.
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

std::optional<int64_t> rounded(std::optional<double> v) {
  if (!v || !(std::fabs(*v) < 9.0e15)) return std::nullopt;
  return static_cast<int64_t>(std::llround(*v));
}

std::string str(const json& j, const char* key) {
  const json& v = at(j, key);
  return v.is_string() ? v.get<std::string>() : std::string();
}

std::optional<bool> boolean(const json& j, const char* key) {
  const json& v = at(j, key);
  if (!v.is_boolean()) return std::nullopt;
  return v.get<bool>();
}

// ---- formatting ----

std::string fmt_pct(std::optional<double> f) {
  if (!f) return kMissing;
  return fmt::format("{:.2f}%", *f * 100.0);
}

std::string fmt_pp(std::optional<double> f) {
  if (!f) return kMissing;
  double v = *f * 100.0;
  if (std::fabs(v) < 0.005) v = 0.0;  // no "-0.00 pp"
  return fmt::format("{:.2f} pp", v);
}

std::string fmt_int(std::optional<int64_t> v) {
  if (!v) return kMissing;
  // Digits grouped by three: 61470 -> 61,470 (no locale involved).
  uint64_t u = *v < 0 ? static_cast<uint64_t>(-(*v + 1)) + 1 : static_cast<uint64_t>(*v);
  std::string digits = fmt::format("{}", u);
  std::string out;
  int n = static_cast<int>(digits.size());
  for (int i = 0; i < n; i++) {
    if (i > 0 && (n - i) % 3 == 0) out += ',';
    out += digits[static_cast<size_t>(i)];
  }
  return *v < 0 ? "-" + out : out;
}

std::string fmt_num(std::optional<double> v, int digits) {
  if (!v) return kMissing;
  return fmt::format("{:.{}g}", *v, digits);
}

std::string fmt_fixed(std::optional<double> v, int decimals) {
  if (!v) return kMissing;
  return fmt::format("{:.{}f}", *v, decimals);
}

std::string fmt_seconds(std::optional<double> s) {
  if (!s) return kMissing;
  double t = *s;
  if (t < 60.0 || t > 1e12) return fmt::format("{:.1f} s", t);
  int64_t whole = static_cast<int64_t>(std::llround(t));
  if (t < 3600.0) return fmt::format("{} min {:02} s", whole / 60, whole % 60);
  return fmt::format("{} h {:02} min", whole / 3600, (whole % 3600) / 60);
}

std::string fmt_bytes(std::optional<int64_t> b) {
  if (!b) return kMissing;
  double v = static_cast<double>(*b);
  if (*b < 1024) return fmt::format("{} B", *b);
  if (v < 1024.0 * 1024.0) return fmt::format("{:.1f} KiB", v / 1024.0);
  return fmt::format("{:.2f} MiB", v / (1024.0 * 1024.0));
}

std::string fmt_shape(const json& shape) {
  if (!shape.is_array() || shape.empty()) return kMissing;
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); i++) {
    if (i) out += ", ";
    auto d = num(shape[i]);
    out += d ? fmt::format("{:g}", *d) : "?";
  }
  return out + "]";
}

std::string fmt_value(const json& v) {
  if (v.is_null()) return kMissing;
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_number_integer() || v.is_number_unsigned()) return v.dump();
  if (v.is_number_float()) return fmt_num(num(v), 6);
  // Arrays, objects, binary: compact JSON (invalid UTF-8 replaced, never thrown), cut short.
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 120) s = s.substr(0, 117) + "...";
  return s;
}

// ---- helpers over configurations ----

static int64_t abc_of(const json& e) { return integer(e, "abc_bases").value_or(0); }

// "w4a8", or "ABC M=2 a8" for ABC-Net weights (M binary bases instead of a bit width).
static std::string bits_label(const json& e) {
  int64_t m = abc_of(e);
  if (m > 0) {
    auto ab = integer(e, "abits");
    return ab ? fmt::format("ABC M={} a{}", m, *ab) : fmt::format("ABC M={}", m);
  }
  auto w = integer(e, "wbits");
  auto a = integer(e, "abits");
  if (!w && !a) return kMissing;
  return fmt::format("w{}a{}", w ? fmt::format("{}", *w) : "?", a ? fmt::format("{}", *a) : "?");
}


std::optional<double> fp32_accuracy(const json& r) {
  if (auto a = num(r, "fp32_accuracy")) return a;
  return num(at(r, "training"), "test_accuracy");
}

static std::optional<double> drop(const json& r, std::optional<double> acc) {
  auto fp = fp32_accuracy(r);
  if (!fp || !acc) return std::nullopt;
  return *fp - *acc;
}

// The most accurate PTQ/QAT entry with the given bits and no ABC bases; nullptr when none.
static const json* best_entry(const json& r, int64_t wbits, int64_t abits) {
  const json* best = nullptr;
  double best_acc = -1.0;
  for (const char* key : {"ptq", "qat"}) {
    for (const json& e : arr(r, key)) {
      if (integer(e, "wbits") != wbits || integer(e, "abits") != abits || abc_of(e) != 0) continue;
      auto a = num(e, "accuracy");
      if (a && *a > best_acc) {
        best_acc = *a;
        best = &e;
      }
    }
  }
  return best;
}

// ---- header ----

std::vector<std::pair<std::string, std::string>> run_facts(const json& r) {
  std::vector<std::pair<std::string, std::string>> f;
  const json& lb = at(r, "lowbit");
  const json& data = at(r, "data");
  std::string v = str(lb, "version");
  if (!v.empty()) f.push_back({"lowbit", v});
  std::string isa = str(lb, "isa");
  f.push_back({"ISA", isa.empty() ? kMissing : isa});
  f.push_back({"Threads", fmt_int(integer(lb, "threads"))});
  std::string dir = str(data, "dir");
  if (!dir.empty()) f.push_back({"Data", dir});
  if (integer(data, "train_images") || integer(data, "test_images"))
    f.push_back({"Images", fmt::format("{} train / {} test", fmt_int(integer(data, "train_images")),
                                       fmt_int(integer(data, "test_images")))});
  f.push_back({"Total time", fmt_seconds(num(r, "seconds"))});
  if (boolean(r, "interrupted").value_or(false)) f.push_back({"Status", "interrupted"});
  return f;
}

std::vector<Highlight> highlights(const json& r) {
  std::vector<Highlight> h;
  h.push_back({"FP32 accuracy", fmt_pct(fp32_accuracy(r)), "trained model, test set"});
  for (auto [w, a] : {std::pair<int64_t, int64_t>{8, 8}, {4, 4}}) {
    const json* best = best_entry(r, w, a);
    std::string label = w == 8 ? "Best int8 (w8a8)" : "Best w4a4";
    if (!best) {
      h.push_back({label, kMissing, "not run"});
      continue;
    }
    auto acc = num(*best, "accuracy");
    auto d = drop(r, acc);
    std::string note = str(*best, "name");
    if (d) note += fmt::format(" · drop {}", fmt_pp(d));
    h.push_back({label, fmt_pct(acc), note});
  }
  // Speed-up: int8 over FP32 images/s at the largest batch measured for both with equal threads.
  std::optional<double> speedup;
  std::string speed_note = "bench not run";
  int64_t best_batch = -1;
  for (const json& a : arr(r, "bench")) {
    if (str(a, "precision") != "int8") continue;
    for (const json& b : arr(r, "bench")) {
      if (str(b, "precision") != "fp32") continue;
      auto batch = integer(a, "batch");
      if (!batch || batch != integer(b, "batch") || integer(a, "threads") != integer(b, "threads")) continue;
      auto qi = num(a, "images_per_second");
      auto fi = num(b, "images_per_second");
      if (!qi || !fi || *fi <= 0.0 || *batch <= best_batch) continue;
      best_batch = *batch;
      speedup = *qi / *fi;
      speed_note = fmt::format("images/s, batch {}, {} threads, {}", *batch, fmt_int(integer(a, "threads")),
                               str(a, "isa").empty() ? kMissing : str(a, "isa"));
    }
  }
  h.push_back({"int8 speed-up vs FP32", speedup ? fmt::format("{:.2f}×", *speedup) : kMissing, speed_note});
  // Size: FP32 model file over the smallest w8a8 PTQ model file.
  auto fp_bytes = integer(r, "fp32_model_bytes");
  std::optional<int64_t> q_bytes;
  for (const json& e : arr(r, "ptq")) {
    if (integer(e, "wbits") != 8 || integer(e, "abits") != 8 || abc_of(e) != 0) continue;
    auto b = integer(e, "model_bytes");
    if (b && *b > 0 && (!q_bytes || *b < *q_bytes)) q_bytes = b;
  }
  if (fp_bytes && *fp_bytes > 0 && q_bytes)
    h.push_back({"Model size (FP32 / int8)",
                 fmt::format("{:.2f}×", static_cast<double>(*fp_bytes) / static_cast<double>(*q_bytes)),
                 fmt::format("{} → {}", fmt_bytes(fp_bytes), fmt_bytes(q_bytes))});
  else
    h.push_back({"Model size (FP32 / int8)", kMissing, "model sizes not recorded"});
  return h;
}

// ---- tables ----

static void flatten(const json& j, const std::string& prefix, Table& t) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    std::string key = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (it->is_object() && !it->empty())
      flatten(*it, key, t);
    else
      t.rows.push_back({key, fmt_value(*it)});
  }
}

Table config_table(const json& r) {
  Table t{{"Setting", "Value"}, "ll", {}};
  flatten(obj(r, "config"), "", t);
  return t;
}

Table summary_table(const json& r) {
  Table t{{"Layer", "Type", "Kernel", "Input shape", "Output shape", "Params", "Mult-adds"}, "lllllrr", {}};
  for (const json& l : arr(at(r, "summary"), "layers")) {
    const json& k = at(l, "kernel");
    t.rows.push_back({str(l, "name"), str(l, "type"), k.is_array() ? fmt_shape(k) : fmt_value(k),
                      fmt_shape(at(l, "input_shape")), fmt_shape(at(l, "output_shape")),
                      fmt_int(integer(l, "params")), fmt_int(integer(l, "mult_adds"))});
  }
  return t;
}

Table summary_totals(const json& r) {
  const json& s = at(r, "summary");
  Table t{{"Total", "Value"}, "lr", {}};
  if (!s.is_object()) return t;
  t.rows.push_back({"Total params", fmt_int(integer(s, "total_params"))});
  t.rows.push_back({"Total mult-adds", fmt_int(integer(s, "total_mult_adds"))});
  t.rows.push_back({"Input size (MB)", fmt_fixed(num(s, "input_mb"), 2)});
  t.rows.push_back({"Forward/backward pass size (MB)", fmt_fixed(num(s, "forward_backward_mb"), 2)});
  t.rows.push_back({"Params size (MB)", fmt_fixed(num(s, "params_mb"), 2)});
  t.rows.push_back({"Estimated total size (MB)", fmt_fixed(num(s, "total_mb"), 2)});
  return t;
}

Table training_table(const json& r) {
  Table t{{"Epoch", "Loss", "Test accuracy", "Seconds"}, "rrrr", {}};
  for (const json& e : arr(at(r, "training"), "epochs"))
    t.rows.push_back({fmt_int(integer(e, "epoch")), fmt_fixed(num(e, "loss"), 4), fmt_pct(num(e, "test_accuracy")),
                      fmt_fixed(num(e, "seconds"), 1)});
  return t;
}

Table training_totals(const json& r) {
  const json& tr = at(r, "training");
  Table t{{"Training", "Value"}, "lr", {}};
  if (!tr.is_object()) return t;
  std::string from = str(tr, "loaded_from");
  if (!from.empty()) t.rows.push_back({"Trained model loaded from", from});
  t.rows.push_back({"Final test accuracy", fmt_pct(num(tr, "test_accuracy"))});
  t.rows.push_back({"Training throughput (images/s)", fmt_int(rounded(num(tr, "images_per_second")))});
  t.rows.push_back({"Training time", fmt_seconds(num(tr, "seconds"))});
  return t;
}

Table stats_table(const json& r) {
  Table t{{"Tensor", "Kind", "Min", "Max", "Mean", "Std", "3σ low", "3σ high", "Larger range"}, "llrrrrrrl", {}};
  for (const json& s : arr(at(r, "stats"), "tensors"))
    t.rows.push_back({str(s, "name"), str(s, "kind"), fmt_num(num(s, "min"), 4), fmt_num(num(s, "max"), 4),
                      fmt_num(num(s, "mean"), 4), fmt_num(num(s, "std"), 4), fmt_num(num(s, "sigma3_lo"), 4),
                      fmt_num(num(s, "sigma3_hi"), 4), str(s, "larger").empty() ? kMissing : str(s, "larger")});
  return t;
}

Table thresholds_table(const json& r) {
  Table t{{"Tensor", "max", "3-sigma", "percentile", "KL", "MSE"}, "lrrrrr", {}};
  for (const json& s : arr(at(r, "stats"), "tensors")) {
    const json& th = at(s, "thresholds");
    if (!th.is_object() || th.empty()) continue;
    std::vector<std::string> row{str(s, "name")};
    for (const char* c : {"max", "3sigma", "percentile", "kl", "mse"}) row.push_back(fmt_num(num(th, c), 4));
    t.rows.push_back(row);
  }
  return t;
}

static std::string or_missing(const std::string& s) { return s.empty() ? kMissing : s; }

Table ptq_table(const json& r) {
  Table t{{"Configuration", "Bits", "Calibrator", "Granularity", "Requant · rounding", "Accuracy", "Drop",
           "Simulated", "Mismatches", "Calib. s", "Size"},
          "lllllrrrrrr",
          {}};
  for (const json& e : arr(r, "ptq")) {
    auto acc = num(e, "accuracy");
    auto pc = boolean(e, "per_channel");
    t.rows.push_back({or_missing(str(e, "name")), bits_label(e), or_missing(str(e, "calibrator")),
                      pc ? (*pc ? "per-channel" : "per-tensor") : kMissing,
                      fmt::format("{} · {}", or_missing(str(e, "requant")), or_missing(str(e, "rounding"))),
                      fmt_pct(acc), fmt_pp(drop(r, acc)), fmt_pct(num(e, "accuracy_simulated")),
                      fmt_int(integer(e, "mismatches")), fmt_fixed(num(e, "calibration_seconds"), 2),
                      fmt_bytes(integer(e, "model_bytes"))});
  }
  return t;
}

Table qat_table(const json& r) {
  Table t{{"Configuration", "Bits", "STE", "Epochs", "PTQ start", "Accuracy", "Drop", "Fake-quant acc.",
           "FP32 fine-tune acc."},
          "lllrrrrrr",
          {}};
  for (const json& e : arr(r, "qat")) {
    auto acc = num(e, "accuracy");
    t.rows.push_back({or_missing(str(e, "name")), bits_label(e), or_missing(str(e, "ste")),
                      fmt_int(integer(e, "epochs")), fmt_pct(num(e, "ptq_accuracy")), fmt_pct(acc), fmt_pp(drop(r, acc)),
                      fmt_pct(num(e, "accuracy_fake_quant")), fmt_pct(num(e, "fp32_finetune_accuracy"))});
  }
  return t;
}

Table sqnr_table(const json& r, bool cosine) {
  std::vector<std::string> layers;
  for (const json& c : arr(r, "sqnr"))
    for (const json& l : arr(c, "layers")) {
      std::string n = str(l, "name");
      if (std::find(layers.begin(), layers.end(), n) == layers.end()) layers.push_back(n);
    }
  Table t;
  t.head.push_back("Configuration");
  t.align.push_back('l');
  for (const auto& n : layers) {
    t.head.push_back(n.empty() ? "?" : n);
    t.align += 'r';
  }
  for (const json& c : arr(r, "sqnr")) {
    std::vector<std::string> row{or_missing(str(c, "config"))};
    for (const auto& n : layers) {
      std::string cell = kMissing;
      for (const json& l : arr(c, "layers"))
        if (str(l, "name") == n) cell = cosine ? fmt_fixed(num(l, "cosine"), 5) : fmt_fixed(num(l, "sqnr_db"), 1);
      row.push_back(cell);
    }
    t.rows.push_back(row);
  }
  return t;
}

Table sensitivity_table(const json& r) {
  const json& s = at(r, "sensitivity");
  auto bits = integer(s, "bits");
  Table t{{bits ? fmt::format("Layer quantized to {} bits", *bits) : "Layer quantized", "Accuracy", "Drop vs FP32"},
          "lrr",
          {}};
  auto base = num(s, "baseline_fp32");
  if (base) t.rows.push_back({"none (FP32 baseline)", fmt_pct(base), fmt_pp(0.0)});
  for (const json& l : arr(s, "layers")) {
    auto acc = num(l, "accuracy");
    t.rows.push_back({or_missing(str(l, "name")), fmt_pct(acc),
                      fmt_pp(base && acc ? std::optional<double>(*base - *acc) : std::nullopt)});
  }
  return t;
}

Table bench_table(const json& r) {
  Table t{{"Precision", "ISA", "Batch", "Threads", "Images/s", "Batch-1 latency p50 (µs)", "Speed-up vs FP32"},
          "llrrrrr",
          {}};
  for (const json& b : arr(r, "bench")) {
    std::string speed = kMissing;
    auto ips = num(b, "images_per_second");
    for (const json& f : arr(r, "bench")) {
      if (str(f, "precision") != "fp32" || integer(f, "batch") != integer(b, "batch") ||
          integer(f, "threads") != integer(b, "threads"))
        continue;
      auto fips = num(f, "images_per_second");
      if (ips && fips && *fips > 0.0) speed = fmt::format("{:.2f}×", *ips / *fips);
    }
    t.rows.push_back({or_missing(str(b, "precision")), or_missing(str(b, "isa")), fmt_int(integer(b, "batch")),
                      fmt_int(integer(b, "threads")), fmt_int(rounded(ips)),
                      fmt_fixed(num(b, "latency_us_p50"), 1), speed});
  }
  return t;
}

// ---- accuracy vs bit width ----

BitwidthView bitwidth_view(const json& r) {
  // key orders the x axis: plain configs by weight bits then activation bits (high to low), then
  // ABC-Net configs by number of bases (low to high).
  struct Point {
    std::string series;
    std::tuple<int, int64_t, int64_t> key;
    std::string label;
    double acc;
  };
  std::vector<Point> pts;
  for (const char* kind : {"ptq", "qat"}) {
    for (const json& e : arr(r, kind)) {
      auto acc = num(e, "accuracy");
      auto w = integer(e, "wbits");
      auto a = integer(e, "abits");
      if (!acc || !a) continue;
      int64_t m = abc_of(e);
      std::string method = kind[0] == 'p' ? "PTQ" : "QAT";
      if (m > 0)
        pts.push_back({"ABC-Net (" + method + ")", {1, m, -*a}, fmt::format("ABC M={} a{}", m, *a), *acc});
      else if (w)
        pts.push_back({method, {0, -*w, -*a}, fmt::format("w{}a{}", *w, *a), *acc});
    }
  }
  BitwidthView v;
  std::map<std::tuple<int, int64_t, int64_t>, std::string> labels;
  for (const auto& p : pts) labels[p.key] = p.label;
  for (const auto& [k, l] : labels) v.labels.push_back(l);
  for (const char* s : {"PTQ", "QAT", "ABC-Net (PTQ)", "ABC-Net (QAT)"}) {
    std::vector<std::optional<double>> row(v.labels.size());
    bool any = false;
    for (const auto& p : pts) {
      if (p.series != s) continue;
      size_t i = static_cast<size_t>(std::find(v.labels.begin(), v.labels.end(), p.label) - v.labels.begin());
      if (!row[i] || p.acc > *row[i]) row[i] = p.acc;  // best calibrator / STE of the group
      any = true;
    }
    if (!any) continue;
    v.series.push_back(s);
    v.acc.push_back(row);
  }
  return v;
}

Table bitwidth_table(const BitwidthView& v) {
  Table t;
  t.head.push_back("Bits");
  t.align.push_back('l');
  for (const auto& s : v.series) {
    t.head.push_back(s);
    t.align += 'r';
  }
  for (size_t i = 0; i < v.labels.size(); i++) {
    std::vector<std::string> row{v.labels[i]};
    for (const auto& s : v.acc) row.push_back(fmt_pct(s[i]));
    t.rows.push_back(row);
  }
  return t;
}

// ---- notes ----

std::vector<std::string> missing_sections(const json& r) {
  std::vector<std::string> out;
  for (int i = 0; i < kSectionCount; i++) {
    const json& v = at(r, kSections[i].key);
    bool empty = v.is_null() || ((v.is_array() || v.is_object()) && v.empty()) || !(v.is_array() || v.is_object());
    if (empty) out.push_back(kSections[i].title);
  }
  return out;
}

std::vector<std::string> problems(const json& r) {
  std::vector<std::string> out;
  for (const char* kind : {"ptq", "qat"}) {
    std::string label = kind[0] == 'p' ? "PTQ" : "QAT";
    for (const json& e : arr(r, kind)) {
      std::string name = or_missing(str(e, "name"));
      std::string err = str(e, "error");
      if (!err.empty()) out.push_back(fmt::format("{} {} failed: {}", label, name, err));
      if (boolean(e, "diverged").value_or(false)) {
        std::string why = str(e, "diverged_message");
        out.push_back(fmt::format("{} {} diverged{}", label, name, why.empty() ? "" : ": " + why));
      }
      for (const json& n : arr(e, "notes"))
        if (n.is_string() && !n.get<std::string>().empty())
          out.push_back(fmt::format("{} {}: {}", label, name, n.get<std::string>()));
    }
  }
  return out;
}

std::vector<std::string> skipped_list(const json& r) {
  std::vector<std::string> out;
  for (const json& s : arr(r, "skipped")) out.push_back(s.is_string() ? s.get<std::string>() : fmt_value(s));
  return out;
}

}  // namespace lowbit::report
