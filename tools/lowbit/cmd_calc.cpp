// lowbit calc quantize | dot | kl | kl-merge | abc: the arithmetic of quantization by hand, printed
// as a derivation a student can follow and, with --json FILE, written as numbers (keys: DESIGN.md
// section 2). Not here: the math itself; every number comes from include/lowbit/quant.h so that
// calc shows exactly what the quantizer does.
#include "calc.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "lowbit/quant.h"

namespace {

using lowbit::Error;
using nlohmann::json;

// "-2.2, 1.1,3" -> {-2.2, 1.1, 3}; Error naming the flag for empty lists and non-numbers.
std::vector<double> parse_list(const std::string& flag, const std::string& text) {
  std::vector<double> out;
  size_t pos = 0;
  while (true) {
    const size_t comma = text.find(',', pos);
    std::string item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty()) {
      if (text.find_first_not_of(" \t") == std::string::npos)
        throw Error(flag + ": empty list (give comma-separated numbers, e.g. " + flag + "=-2.2,1.1)");
      throw Error(fmt::format("{}: entry {} of '{}' is empty", flag, out.size() + 1, text));
    }
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    if (end != item.c_str() + item.size()) throw Error(flag + ": '" + item + "' is not a number");
    if (!std::isfinite(v)) throw Error(flag + ": '" + item + "' is not a finite number");
    out.push_back(v);
    if (comma == std::string::npos) return out;
    pos = comma + 1;
  }
}

std::vector<float> parse_floats(const std::string& flag, const std::string& text) {
  std::vector<float> out;
  for (double v : parse_list(flag, text)) {
    if (std::fabs(v) > 3.4e38) throw Error(fmt::format("{}: {} is outside the float range", flag, v));
    out.push_back(static_cast<float>(v));
  }
  return out;
}

std::string g7(double v) { return fmt::format("{:.7g}", v); }

std::string join(const std::vector<std::string>& items) {
  std::string s = "[";
  for (size_t i = 0; i < items.size(); ++i) s += (i ? ", " : "") + items[i];
  return s + "]";
}
template <class T>
std::string list_str(const std::vector<T>& v) {
  std::vector<std::string> items;
  for (const T& x : v) items.push_back(g7(static_cast<double>(x)));
  return join(items);
}

json finite_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

// A float as the double nearest its shortest decimal form, so JSON shows 0.0275, not
// 0.02749999612569809; reading it back as float gives the same float.
double tidy(float v) { return std::stod(fmt::format("{}", v)); }
json tidy(const std::vector<float>& v) {
  json a = json::array();
  for (float x : v) a.push_back(tidy(x));
  return a;
}

// ---- quantize / dot ----

struct QuantSpec {
  int bits = 8;
  std::string scheme = "symmetric", rounding = "nearest", range, scale, zero_point;
  bool narrow = false;
};

void add_quant_spec(CLI::App* sub, QuantSpec& s) {
  sub->add_option("--bits", s.bits, "Bit width, 2..8")->capture_default_str();
  sub->add_option("--scheme", s.scheme, "symmetric | affine")->capture_default_str();
  sub->add_flag("--narrow", s.narrow, "Narrow range: drop the lowest code ([-127, 127], [-7, 7])");
  sub->add_option("--rounding", s.rounding, "nearest (ties to even) | floor")->capture_default_str();
  sub->add_option("--range", s.range, "Clip range LO,HI (default: the values' min,max)");
  sub->add_option("--scale", s.scale,
                  "Use this scale instead of deriving it (e.g. 0.275 = 2.2/8, the course's amax/2^(b-1))");
  sub->add_option("--zero-point", s.zero_point, "Use this zero point instead of deriving it");
}

struct Quantized {
  lowbit::QParams qp;
  lowbit::Rounding rounding = lowbit::Rounding::Nearest;
  float lo = 0, hi = 0;
  std::vector<float> x, deq;
  std::vector<int32_t> q;
};

// Quantizes x as the spec says, printing each step when `print`. `what` names the vector.
Quantized quantize_verbose(const std::vector<float>& x, const QuantSpec& spec, const std::string& what,
                           bool print) {
  if (spec.bits < 2 || spec.bits > 8) throw Error(fmt::format("--bits: must be in 2..8, got {}", spec.bits));
  lowbit::Scheme scheme;
  try {
    scheme = lowbit::parse_scheme(spec.scheme);
  } catch (const Error& e) {
    throw Error(std::string("--scheme: ") + e.what());
  }
  Quantized r;
  try {
    r.rounding = lowbit::parse_rounding(spec.rounding);
  } catch (const Error& e) {
    throw Error(std::string("--rounding: ") + e.what());
  }
  r.x = x;
  const int32_t qmin = lowbit::quant_min(spec.bits, spec.narrow), qmax = lowbit::quant_max(spec.bits);
  auto say = [print](const std::string& line) {
    if (print) std::printf("%s\n", line.c_str());
  };
  say(fmt::format("{}: {} values, {} bits, {}, {} range: q in [{}, {}]", what, x.size(), spec.bits,
                  spec.scheme, spec.narrow ? "narrow" : "full", qmin, qmax));
  if (!spec.range.empty()) {
    const std::vector<float> lh = parse_floats("--range", spec.range);
    if (lh.size() != 2) throw Error("--range: give two numbers LO,HI, got '" + spec.range + "'");
    if (lh[0] > lh[1]) throw Error("--range: LO must be <= HI, got '" + spec.range + "'");
    r.lo = lh[0], r.hi = lh[1];
    say(fmt::format("  range [lo, hi] = [{}, {}] (from --range)", g7(r.lo), g7(r.hi)));
  } else {
    r.lo = *std::min_element(x.begin(), x.end());
    r.hi = *std::max_element(x.begin(), x.end());
    say(fmt::format("  range [lo, hi] = [min, max] = [{}, {}]", g7(r.lo), g7(r.hi)));
  }
  r.qp = lowbit::choose_qparams(r.lo, r.hi, spec.bits, scheme, spec.narrow, what);
  const float wlo = std::min(r.lo, 0.0f), whi = std::max(r.hi, 0.0f);  // affine widening
  if (!spec.scale.empty()) {
    const std::vector<float> s = parse_floats("--scale", spec.scale);
    if (s.size() != 1 || !(s[0] > 0)) throw Error("--scale: give one positive number, got '" + spec.scale + "'");
    r.qp.scale = s[0];
    if (scheme == lowbit::Scheme::Affine)
      r.qp.zero_point = static_cast<int32_t>(std::clamp(std::nearbyint(static_cast<float>(qmin) - wlo / s[0]),
                                                        static_cast<float>(qmin), static_cast<float>(qmax)));
    say(fmt::format("  scale s = {} (given by --scale)", g7(r.qp.scale)));
  } else if (scheme == lowbit::Scheme::Symmetric) {
    const float amax = std::max(std::fabs(r.lo), std::fabs(r.hi));
    say(fmt::format("  amax = max(|lo|, |hi|) = {}", g7(amax)));
    if (amax == 0)
      say("  amax = 0: zero-width range, s = 1 (every value is 0; nothing to divide)");
    else
      say(fmt::format("  scale s = amax / qmax = {} / {} = {}", g7(amax), qmax, g7(r.qp.scale)));
  } else {
    if (wlo != r.lo || whi != r.hi)
      say(fmt::format("  widened to include 0: [{}, {}]", g7(wlo), g7(whi)));
    if (whi == wlo)
      say("  zero-width range: s = 1 (every value is 0; nothing to divide)");
    else
      say(fmt::format("  scale s = (hi - lo) / (qmax - qmin) = {} / {} = {}", g7(whi - wlo), qmax - qmin,
                      g7(r.qp.scale)));
  }
  if (!spec.zero_point.empty()) {
    const std::vector<double> z = parse_list("--zero-point", spec.zero_point);
    if (z.size() != 1 || z[0] != std::floor(z[0]) || z[0] < qmin || z[0] > qmax)
      throw Error(fmt::format("--zero-point: give one integer in [{}, {}], got '{}'", qmin, qmax, spec.zero_point));
    r.qp.zero_point = static_cast<int32_t>(z[0]);
    say(fmt::format("  zero point z = {} (given by --zero-point)", r.qp.zero_point));
  } else if (scheme == lowbit::Scheme::Symmetric) {
    say("  zero point z = 0 (symmetric)");
  } else {
    const float v = static_cast<float>(qmin) - wlo / r.qp.scale;
    say(fmt::format("  zero point z = round(qmin - lo / s) = round({} - ({}) / {}) = round({}) = {}", qmin, g7(wlo),
                    g7(r.qp.scale), g7(v), r.qp.zero_point));
  }
  const bool nearest = r.rounding == lowbit::Rounding::Nearest;
  say(fmt::format("  q = clamp({}(x / s) + z, {}, {});  x_hat = s * (q - z)", nearest ? "round" : "floor", qmin,
                  qmax));
  if (nearest) say("  (round = to nearest, ties to even: 2.5 -> 2, 3.5 -> 4, as ONNX)");
  say(fmt::format("  {:>12} {:>12} {:>9} {:>7} {:>5} {:>12} {:>12}", "x", "x/s", nearest ? "round" : "floor", "+z",
                  "q", "x_hat", "x_hat - x"));
  const float z = static_cast<float>(r.qp.zero_point);
  for (float xi : x) {
    const float v = xi / r.qp.scale;
    const float rv = lowbit::quant_round(v, r.rounding);
    const int32_t qi = lowbit::quantize_value(xi, r.qp, r.rounding);
    const float d = lowbit::dequantize_value(qi, r.qp);
    const bool clamped = static_cast<float>(qi) != rv + z;
    say(fmt::format("  {:>12} {:>12} {:>9} {:>7} {:>5} {:>12} {:>12}{}", g7(xi), g7(v), g7(rv), g7(rv + z), qi, g7(d),
                    g7(static_cast<double>(d) - xi), clamped ? "  (clamped)" : ""));
    r.q.push_back(qi);
    r.deq.push_back(d);
  }
  return r;
}

json quant_json(const Quantized& r) {
  return {{"scale", tidy(r.qp.scale)},   {"zero_point", r.qp.zero_point}, {"q", r.q},
          {"dequantized", tidy(r.deq)},   {"bits", r.qp.bits},             {"qmin", r.qp.qmin()},
          {"qmax", r.qp.qmax()},          {"scheme", lowbit::scheme_name(r.qp.scheme)},
          {"narrow", r.qp.narrow},        {"rounding", lowbit::rounding_name(r.rounding)},
          {"range", {tidy(r.lo), tidy(r.hi)}}};
}

struct QuantizeOpts {
  lowbit::cli::Common common;
  QuantSpec spec;
  std::string values;
};

void run_quantize(const QuantizeOpts& o) {
  lowbit::cli::apply(o.common);
  const Quantized r = quantize_verbose(parse_floats("--values", o.values), o.spec, "values", !o.common.quiet);
  if (!o.common.quiet) std::printf("q = %s\ndequantized = %s\n", list_str(r.q).c_str(), list_str(r.deq).c_str());
  lowbit::cli::write_json(o.common, quant_json(r));
}

struct DotOpts {
  lowbit::cli::Common common;
  QuantSpec spec;
  std::string a, b;
};

void run_dot(const DotOpts& o) {
  lowbit::cli::apply(o.common);
  const std::vector<float> a = parse_floats("--a", o.a), b = parse_floats("--b", o.b);
  if (a.size() != b.size())
    throw Error(fmt::format("--a has {} values but --b has {}: a dot product needs equal lengths", a.size(), b.size()));
  const bool print = !o.common.quiet;
  const Quantized qa = quantize_verbose(a, o.spec, "a", print);
  const Quantized qb = quantize_verbose(b, o.spec, "b", print);
  // Integer dot of the zero-point-shifted codes; expanded as the integer engine computes it:
  // sum (qa - za)(qb - zb) = sum qa qb - zb sum qa - za sum qb + n za zb.
  int64_t dot = 0, raw = 0, sa = 0, sb = 0;
  double fdot = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    dot += int64_t{qa.q[i] - qa.qp.zero_point} * (qb.q[i] - qb.qp.zero_point);
    raw += int64_t{qa.q[i]} * qb.q[i];
    sa += qa.q[i], sb += qb.q[i];
    fdot += static_cast<double>(a[i]) * b[i];
  }
  const int64_t za = qa.qp.zero_point, zb = qb.qp.zero_point, n = static_cast<int64_t>(a.size());
  const double deq = static_cast<double>(qa.qp.scale) * qb.qp.scale * static_cast<double>(dot);
  if (print) {
    std::printf("integer dot = sum (qa - za)(qb - zb)\n");
    if (za || zb)
      fmt::print("  = sum qa*qb - zb*sum qa - za*sum qb + n*za*zb = {} - ({})({}) - ({})({}) + {}({})({})\n", raw, zb,
                 sa, za, sb, n, za, zb);
    fmt::print("  = {}\n", dot);
    fmt::print("dequantized = s_a * s_b * dot = {} * {} * {} = {}\n", g7(qa.qp.scale), g7(qb.qp.scale), dot, g7(deq));
    std::printf("float dot   = %s   (error %s)\n", g7(fdot).c_str(), g7(deq - fdot).c_str());
  }
  lowbit::cli::write_json(o.common, {{"qa", qa.q},
                                     {"qb", qb.q},
                                     {"scale_a", tidy(qa.qp.scale)},
                                     {"zero_point_a", qa.qp.zero_point},
                                     {"scale_b", tidy(qb.qp.scale)},
                                     {"zero_point_b", qb.qp.zero_point},
                                     {"int_dot", dot},
                                     {"dequantized", deq},
                                     {"float", fdot},
                                     {"a", quant_json(qa)},
                                     {"b", quant_json(qb)}});
}

// ---- kl / kl-merge ----

struct KlOpts {
  lowbit::cli::Common common;
  std::string p, q;
};

void check_masses(const std::string& flag, const std::vector<double>& v) {
  double sum = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] < 0) throw Error(fmt::format("{}: entry {} is negative ({})", flag, i + 1, v[i]));
    sum += v[i];
  }
  if (sum == 0) throw Error(flag + ": all entries are 0");
}

std::vector<double> normalized(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  std::vector<double> out;
  for (double x : v) out.push_back(x / sum);
  return out;
}

// Prints the terms of KL(A||B) = sum a log(a / b) over a > 0 for normalized a, b.
void print_kl_terms(const char* title, const std::vector<double>& a, const std::vector<double>& b,
                    const char* an, const char* bn, double total) {
  std::printf("%s = sum %s log(%s / %s) over %s > 0, natural log\n", title, an, an, bn, an);
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == 0) continue;
    if (b[i] == 0)
      std::printf("  [%zu] %s * log(%s / 0) = infinite (%s has no mass where %s has)\n", i, g7(a[i]).c_str(),
                  g7(a[i]).c_str(), bn, an);
    else
      std::printf("  [%zu] %s * log(%s / %s) = %s\n", i, g7(a[i]).c_str(), g7(a[i]).c_str(), g7(b[i]).c_str(),
                  g7(a[i] * std::log(a[i] / b[i])).c_str());
  }
  std::printf("  %s = %s\n", title, std::isfinite(total) ? fmt::format("{:.6g}", total).c_str() : "infinite");
}

void run_kl(const KlOpts& o) {
  lowbit::cli::apply(o.common);
  const std::vector<double> p = parse_list("--p", o.p), q = parse_list("--q", o.q);
  if (p.size() != q.size())
    throw Error(fmt::format("--p has {} values but --q has {}: KL needs equal lengths", p.size(), q.size()));
  check_masses("--p", p);
  check_masses("--q", q);
  const double fwd = lowbit::kl_divergence(p, q), rev = lowbit::kl_divergence(q, p);
  if (!o.common.quiet) {
    const std::vector<double> pn = normalized(p), qn = normalized(q);
    std::printf("normalized: P = %s, Q = %s\n", list_str(pn).c_str(), list_str(qn).c_str());
    print_kl_terms("forward KL(P||Q)", pn, qn, "P", "Q", fwd);
    print_kl_terms("reverse KL(Q||P)", qn, pn, "Q", "P", rev);
  }
  lowbit::cli::write_json(o.common, {{"forward", finite_or_null(fwd)}, {"reverse", finite_or_null(rev)}});
}

struct KlMergeOpts {
  lowbit::cli::Common common;
  std::string hist;
  int bins = 0;
};

void run_kl_merge(const KlMergeOpts& o) {
  lowbit::cli::apply(o.common);
  const std::vector<double> h = parse_list("--hist", o.hist);
  check_masses("--hist", h);
  if (o.bins < 1 || static_cast<size_t>(o.bins) > h.size())
    throw Error(fmt::format("--bins: must be in 1..{} (the histogram length), got {}", h.size(), o.bins));
  const std::vector<double> q = lowbit::kl_merge_expand(h, o.bins);
  const double kl = lowbit::kl_divergence(h, q);
  // Group totals, for the derivation (the same grouping as kl_merge_expand).
  const size_t k = static_cast<size_t>(o.bins), per = h.size() / k;
  std::vector<double> merged;
  for (size_t g = 0; g < k; ++g) {
    const size_t b = g * per, e = g + 1 == k ? h.size() : b + per;
    double total = 0;
    size_t nz = 0;
    for (size_t j = b; j < e; ++j) total += h[j], nz += h[j] != 0;
    merged.push_back(total);
    if (!o.common.quiet)
      std::printf("group %zu: bins %zu..%zu, total %s over %zu non-zero bin(s) -> %s each\n", g, b, e - 1,
                  g7(total).c_str(), nz, nz ? g7(total / static_cast<double>(nz)).c_str() : "0");
  }
  if (!o.common.quiet) {
    std::printf("P        = %s\nmerged   = %s\nexpanded = %s  (empty bins of P stay empty)\n", list_str(h).c_str(),
                list_str(merged).c_str(), list_str(q).c_str());
    std::printf("KL(P||Q) after normalizing both = %s\n", std::isfinite(kl) ? g7(kl).c_str() : "infinite");
  }
  lowbit::cli::write_json(o.common, {{"merged", merged}, {"expanded", q}, {"kl", finite_or_null(kl)}});
}

// ---- abc ----

struct AbcOpts {
  lowbit::cli::Common common;
  std::string values;
  int bases = 3;
};

void run_abc(const AbcOpts& o) {
  lowbit::cli::apply(o.common);
  const std::vector<float> w = parse_floats("--values", o.values);
  if (o.bases < 1 || o.bases > 5) throw Error(fmt::format("--bases: must be in 1..5, got {}", o.bases));
  const lowbit::AbcBases r = lowbit::abc_bases(w.data(), static_cast<int64_t>(w.size()), o.bases);
  double mean = 0, var = 0;
  for (float v : w) mean += v;
  mean /= static_cast<double>(w.size());
  for (float v : w) var += (v - mean) * (v - mean);
  const double sd = std::sqrt(var / static_cast<double>(w.size()));
  json bases = json::array();
  for (int i = 0; i < r.m; ++i)
    bases.push_back(std::vector<int>(r.bases.begin() + i * r.n, r.bases.begin() + (i + 1) * r.n));
  if (!o.common.quiet) {
    std::printf("W = %s\nmean(W) = %s, std(W) = %s (population)\n", list_str(w).c_str(), g7(mean).c_str(),
                g7(sd).c_str());
    for (int i = 0; i < r.m; ++i)
      std::printf("u_%d = %s: B_%d = sign(W - mean + u_%d * std) = %s\n", i + 1, g7(r.u[static_cast<size_t>(i)]).c_str(),
                  i + 1, i + 1, bases[static_cast<size_t>(i)].dump().c_str());
    std::printf("alphas (least squares, min ||W - sum alpha_i B_i||^2) = %s\n", list_str(r.alphas).c_str());
    double err = 0;
    for (size_t j = 0; j < w.size(); ++j) err += (w[j] - r.approx[j]) * (w[j] - r.approx[j]);
    std::printf("approx = sum alpha_i B_i = %s\nsquared error = %s\n", list_str(r.approx).c_str(), g7(err).c_str());
  }
  lowbit::cli::write_json(o.common, {{"bases", bases}, {"alphas", tidy(r.alphas)}, {"approx", tidy(r.approx)}, {"u", r.u},
                                     {"mean", mean}, {"std", sd}});
}

}  // namespace

void add_calc_command(CLI::App& app) {
  auto* calc = app.add_subcommand("calc", "The arithmetic of quantization by hand, for checking and teaching");
  calc->require_subcommand(1);

  static QuantizeOpts qo;
  auto* q = calc->add_subcommand("quantize", "Scale, zero point, codes and dequantized values of a list");
  q->add_option("--values", qo.values, "Comma-separated values, e.g. -2.2,-1.1,1.1,2.2")->required();
  add_quant_spec(q, qo.spec);
  lowbit::cli::add_common(q, qo.common, false);
  q->callback([] { run_quantize(qo); });

  static DotOpts dto;
  auto* d = calc->add_subcommand("dot", "Quantize two vectors and compare the integer dot product with the float one");
  d->add_option("--a", dto.a, "First vector, comma-separated")->required();
  d->add_option("--b", dto.b, "Second vector, comma-separated")->required();
  add_quant_spec(d, dto.spec);
  lowbit::cli::add_common(d, dto.common, false);
  d->callback([] { run_dot(dto); });

  static KlOpts ko;
  auto* k = calc->add_subcommand("kl", "Forward KL(P||Q) and reverse KL(Q||P), natural log");
  k->add_option("--p", ko.p, "Distribution P (normalized for you)")->required();
  k->add_option("--q", ko.q, "Distribution Q (normalized for you)")->required();
  lowbit::cli::add_common(k, ko.common, false);
  k->callback([] { run_kl(ko); });

  static KlMergeOpts mo;
  auto* m = calc->add_subcommand("kl-merge", "Merge a histogram into K bins and expand it back (KL calibration's Q)");
  m->add_option("--hist", mo.hist, "Histogram counts, comma-separated")->required();
  m->add_option("--bins", mo.bins, "Number of merged bins K")->required();
  lowbit::cli::add_common(m, mo.common, false);
  m->callback([] { run_kl_merge(mo); });

  static AbcOpts ao;
  auto* a = calc->add_subcommand("abc", "ABC-Net binary bases and least-squares alphas of a weight list");
  a->add_option("--values", ao.values, "Weights, comma-separated")->required();
  a->add_option("--bases", ao.bases, "Number of binary bases M, 1..5")->capture_default_str();
  lowbit::cli::add_common(a, ao.common, false);
  a->callback([] { run_abc(ao); });
}
