// Inline-SVG charts for report.html (see svg_chart.h). Plain string building: each chart computes
// a pixel box, linear scales with "nice" 1-2-5 ticks, then emits axes, grid, marks and a legend.
// Not here: data selection; the caller passes the numbers to draw.
#include "report/svg_chart.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace lowbit::report {

const char* const kPalette[10] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                  "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};

const char* palette(size_t i) { return kPalette[i % 10]; }

static const char* const kInk = "#2b2f36";     // text
static const char* const kMuted = "#6b7280";   // tick labels
static const char* const kGrid = "#e5e7eb";    // grid lines
static const char* const kAxis = "#9ca3af";    // axis lines
static const double kFont = 12.0;

std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// ---- small helpers ----

// Approximate rendered width of text in a sans-serif font (UTF-8 code points * 0.58 em).
static double text_width(const std::string& s, double font) {
  size_t cps = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) cps++;
  return static_cast<double>(cps) * font * 0.58;
}

static std::string px(double v) { return fmt::format("{:.1f}", v); }

static std::string text(double x, double y, const std::string& s, const char* anchor, const char* color,
                        const std::string& extra = "") {
  return fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"{}\" fill=\"{}\"{}>{}</text>\n", px(x), px(y), anchor,
                     color, extra, html_escape(s));
}

static std::string line(double x1, double y1, double x2, double y2, const char* color, double w,
                        const std::string& extra = "") {
  return fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"{}\"{}/>\n", px(x1),
                     px(y1), px(x2), px(y2), color, w, extra);
}

static std::string svg_open(int w, int h, const std::string& title) {
  return fmt::format(
      "<svg class=\"chart\" viewBox=\"0 0 {0} {1}\" width=\"{0}\" height=\"{1}\" font-size=\"{2}\" role=\"img\" "
      "aria-label=\"{3}\">\n",
      w, h, kFont, html_escape(title));
}

// A step of 1, 2 or 5 times a power of ten giving about `target` intervals over range.
static double nice_step(double range, int target) {
  if (!(range > 0.0)) return 1.0;
  double raw = range / target;
  double p = std::pow(10.0, std::floor(std::log10(raw)));
  double f = raw / p;
  double m = f < 1.5 ? 1.0 : f < 3.0 ? 2.0 : f < 7.0 ? 5.0 : 10.0;
  return m * p;
}

struct Ticks {
  double lo, hi, step;
  std::vector<double> at;
};

// Extends [lo, hi] outward to multiples of a nice step; a zero-width range is widened first.
// Values from the JSON can be anything finite, so ranges are clamped to +-1e300 (no overflow to
// inf) and a range too narrow for its magnitude (1e16 .. 1e16 + 2) falls back to two ticks.
static Ticks nice_ticks(double lo, double hi, int target, double min_step = 0.0) {
  lo = std::clamp(std::isfinite(lo) ? lo : 0.0, -1e300, 1e300);
  hi = std::clamp(std::isfinite(hi) ? hi : 1.0, -1e300, 1e300);
  if (!(hi > lo)) {
    double pad = std::fabs(lo) > 0.0 ? std::fabs(lo) * 0.1 : 1.0;
    lo -= pad;
    hi += pad;
  }
  double step = std::max(nice_step(hi - lo, target), min_step);
  Ticks t{std::floor(lo / step + 1e-9) * step, std::ceil(hi / step - 1e-9) * step, step, {}};
  double n = std::round((t.hi - t.lo) / step);
  if (!std::isfinite(n) || n < 1.0 || n > 50.0 || t.lo + step == t.lo) {
    t = Ticks{lo, hi, hi - lo, {lo, hi}};
    return t;
  }
  for (int i = 0; i <= static_cast<int>(n); i++) {
    double v = t.lo + step * i;
    t.at.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
  }
  return t;
}

// Tick label with just enough decimals for the step; percentages for fractions; k/M for large.
static std::string tick_label(double v, double step, bool percent) {
  if (percent) {
    double s = step * 100.0;
    int dec = s >= 1.0 ? 0 : std::min(12, static_cast<int>(std::ceil(-std::log10(s) - 1e-9)));
    return fmt::format("{:.{}f}%", v * 100.0, dec);
  }
  double a = std::fabs(v);
  if (a >= 1e6) return fmt::format("{:g}M", v / 1e6);
  if (a >= 1e4) return fmt::format("{:g}k", v / 1e3);
  int dec = step >= 1.0 ? 0 : std::min(12, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
  return fmt::format("{:.{}f}", v, dec);
}

// A value label: fixed decimals, thousands grouped with commas (120,345 or 35.2).
static std::string value_text(double v, int decimals) {
  std::string s = fmt::format("{:.{}f}", std::fabs(v), decimals);
  size_t dot = s.find('.');
  size_t int_len = dot == std::string::npos ? s.size() : dot;
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (i > 0 && i < int_len && (int_len - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return v < 0 ? "-" + out : out;
}

struct Scale {
  double d0, d1, r0, r1;
  double operator()(double v) const { return d1 == d0 ? r0 : r0 + (v - d0) / (d1 - d0) * (r1 - r0); }
};

static double legend_item_width(const LegendItem& it) { return 22.0 + text_width(it.name, kFont) + 16.0; }

// Legend laid out left to right, wrapping within width (centered when it fits on one row);
// returns markup, advances y by its height.
static std::string legend_rows(const std::vector<LegendItem>& items, double x0, double& y, double width) {
  std::string s;
  double row_h = 18.0;
  if (items.empty()) return s;
  double total = 0.0;
  for (const auto& it : items) total += legend_item_width(it);
  total -= 16.0;  // no gap after the last item
  if (total < width) x0 += (width - total) / 2.0;
  double x = x0;
  for (const auto& it : items) {
    double w = legend_item_width(it);
    if (x > x0 && x + w > x0 + width) {
      x = x0;
      y += row_h;
    }
    std::string dash = it.dashed ? " stroke-dasharray=\"5 3\"" : "";
    s += line(x, y - 4, x + 16, y - 4, it.color.c_str(), 3.0, dash);
    s += text(x + 21, y, it.name, "start", kInk);
    x += w;
  }
  y += row_h;
  return s;
}

std::string svg_legend(const std::vector<LegendItem>& items, int width) {
  // The height is known only after layout, so the <svg> opening tag is written last.
  double y = 14.0;
  std::string body = legend_rows(items, 4.0, y, width - 8.0);
  int h = static_cast<int>(std::ceil(y - 4.0));
  return svg_open(width, h, "legend") + body + "</svg>\n";
}

static std::string title_text(const std::string& t, double w) {
  return text(w / 2.0, 20.0, t, "middle", kInk, " font-size=\"14\" font-weight=\"600\"");
}

// Horizontal grid lines and y tick labels over the plot box [x0, x1] x [y scale].
static std::string y_axis(const Ticks& t, const Scale& ys, double x0, double x1, bool percent) {
  std::string s;
  for (double v : t.at) {
    double y = ys(v);
    s += line(x0, y, x1, y, v == 0.0 ? kAxis : kGrid, 1.0);
    s += text(x0 - 6, y + 4, tick_label(v, t.step, percent), "end", kMuted);
  }
  return s;
}

static std::string axis_titles(const std::string& xt, const std::string& yt, double x0, double x1, double y0,
                               double y1, double bottom_y) {
  std::string s;
  if (!xt.empty()) s += text((x0 + x1) / 2.0, bottom_y, xt, "middle", kInk);
  if (!yt.empty())
    s += text(14, (y0 + y1) / 2.0, yt, "middle", kInk,
              fmt::format(" transform=\"rotate(-90 14 {})\"", px((y0 + y1) / 2.0)));
  return s;
}

// ---- line chart ----

std::string svg_line_chart(const LineChart& c) {
  double W = c.width, H = c.height;
  std::vector<LegendItem> leg;
  for (const auto& s : c.series) leg.push_back({s.name, s.color, false});
  if (c.ref_y) leg.push_back({c.ref_label, "#111827", true});

  double ymin = HUGE_VAL, ymax = -HUGE_VAL, xmin = HUGE_VAL, xmax = -HUGE_VAL;
  for (const auto& s : c.series)
    for (size_t i = 0; i < s.y.size() && i < s.x.size(); i++) {
      if (!std::isfinite(s.y[i]) || !std::isfinite(s.x[i])) continue;
      ymin = std::min(ymin, s.y[i]);
      ymax = std::max(ymax, s.y[i]);
      xmin = std::min(xmin, s.x[i]);
      xmax = std::max(xmax, s.x[i]);
    }
  if (c.ref_y) {
    ymin = std::min(ymin, *c.ref_y);
    ymax = std::max(ymax, *c.ref_y);
  }
  if (ymin > ymax) ymin = 0, ymax = 1;
  if (xmin > xmax) xmin = 0, xmax = 1;

  std::string body;
  double top = 40.0;
  std::string leg_svg = leg.size() > 1 || c.ref_y ? legend_rows(leg, 56.0, top, W - 70.0) : "";
  top += 4.0;

  // x ticks: categorical labels (maybe rotated), or nice numeric ticks.
  bool categorical = !c.x_labels.empty();
  Ticks xt{};
  double xd0 = xmin, xd1 = xmax;
  if (categorical) {
    xd0 = -0.5;
    xd1 = static_cast<double>(c.x_labels.size()) - 0.5;
  } else {
    xt = nice_ticks(xmin, xmax, 6, c.x_integer ? 1.0 : 0.0);
    xd0 = xt.lo;
    xd1 = xt.hi;
  }
  double left = 56.0, right = 18.0;
  double plot_w = W - left - right;
  bool rotate = false;
  double max_label = 0.0;
  for (const auto& [x, l] : c.x_labels) max_label = std::max(max_label, text_width(l, kFont));
  if (categorical && max_label + 6.0 > plot_w / static_cast<double>(c.x_labels.size())) rotate = true;
  double bottom = rotate ? 22.0 + max_label * 0.6 : 24.0;
  if (!c.x_title.empty()) bottom += 18.0;

  Ticks yt = nice_ticks(ymin, ymax, 5);
  Scale ys{yt.lo, yt.hi, H - bottom, top};
  Scale xs{xd0, xd1, left, W - right};

  body += y_axis(yt, ys, left, W - right, c.y_percent);
  body += line(left, H - bottom, W - right, H - bottom, kAxis, 1.0);
  if (categorical) {
    for (const auto& [x, l] : c.x_labels) {
      double px_ = xs(x), py = H - bottom + 16;
      if (rotate)
        body += text(px_, py - 4, l, "end", kMuted, fmt::format(" transform=\"rotate(-35 {} {})\"", px(px_), px(py - 4)));
      else
        body += text(px_, py, l, "middle", kMuted);
    }
  } else {
    for (double v : xt.at) body += text(xs(v), H - bottom + 16, tick_label(v, xt.step, false), "middle", kMuted);
  }
  if (c.ref_y) {
    double y = ys(*c.ref_y);
    body += line(left, y, W - right, y, "#111827", 1.2, " stroke-dasharray=\"5 3\"");
  }
  for (const auto& s : c.series) {
    std::string pts;
    for (size_t i = 0; i < s.y.size() && i < s.x.size(); i++) {
      if (!std::isfinite(s.y[i]) || !std::isfinite(s.x[i])) continue;
      pts += fmt::format("{},{} ", px(xs(s.x[i])), px(ys(s.y[i])));
    }
    body += fmt::format(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\" stroke-linejoin=\"round\"><title>{}</title>"
        "</polyline>\n",
        pts, s.color, c.markers ? "2" : "1.6", html_escape(s.name));
    if (!c.markers) continue;
    for (size_t i = 0; i < s.y.size() && i < s.x.size(); i++) {
      if (!std::isfinite(s.y[i]) || !std::isfinite(s.x[i])) continue;
      std::string v = c.y_percent ? fmt::format("{:.2f}%", s.y[i] * 100.0) : fmt::format("{:.4g}", s.y[i]);
      std::string where = categorical && i < s.x.size()
                              ? std::string()
                              : fmt::format(" at {:g}", s.x[i]);
      body += fmt::format(
          "<circle cx=\"{}\" cy=\"{}\" r=\"3.5\" fill=\"{}\" stroke=\"#fff\" stroke-width=\"1\"><title>{}: {}{}</title>"
          "</circle>\n",
          px(xs(s.x[i])), px(ys(s.y[i])), s.color, html_escape(s.name), v, where);
    }
  }
  body += axis_titles(c.x_title, c.y_title, left, W - right, top, H - bottom, H - 6);
  return svg_open(c.width, c.height, c.title) + title_text(c.title, W) + leg_svg + body + "</svg>\n";
}

// ---- horizontal bars ----

std::string svg_hbar_chart(const HBarChart& c) {
  double W = c.width;
  double max_label = 0.0, vmax = 0.0, vmin = 0.0;
  for (const auto& b : c.bars) {
    max_label = std::max(max_label, text_width(b.label, kFont));
    if (std::isfinite(b.value)) {
      vmax = std::max(vmax, b.value);
      vmin = std::min(vmin, b.value);
    }
  }
  if (c.ref) vmax = std::max(vmax, *c.ref);
  double top = 40.0;
  std::vector<LegendItem> leg = c.legend;
  if (c.ref) leg.push_back({c.ref_label, "#111827", true});
  double left = std::min(std::max(max_label + 14.0, 60.0), W * 0.42);
  std::string leg_svg = legend_rows(leg, left, top, W - left - 10.0);
  top += 4.0;
  double bar_h = 16.0, gap = 6.0;
  double plot_h = static_cast<double>(c.bars.size()) * (bar_h + gap) + gap;
  double bottom = c.x_title.empty() ? 24.0 : 42.0;
  double H = top + plot_h + bottom;
  // Values go in a right-aligned column past the plot, clear of the bars and the reference line.
  double value_w = 0.0;
  for (const auto& b : c.bars) value_w = std::max(value_w, text_width(b.value_text, kFont));
  double right = value_w + 22.0;
  Ticks xt = nice_ticks(vmin, vmax > vmin ? vmax : vmin + 1.0, 6);
  if (c.percent && xt.hi > 1.0 && vmax <= 1.0) xt = nice_ticks(vmin, 1.0, 6);
  Scale xs{xt.lo, xt.hi, left, W - right};

  std::string body;
  for (double v : xt.at) {
    double x = xs(v);
    body += line(x, top, x, top + plot_h, v == 0.0 ? kAxis : kGrid, 1.0);
    body += text(x, top + plot_h + 16, tick_label(v, xt.step, c.percent), "middle", kMuted);
  }
  double y = top + gap;
  for (const auto& b : c.bars) {
    double v = std::isfinite(b.value) ? b.value : 0.0;
    double x0 = xs(std::min(0.0, v)), x1 = xs(std::max(0.0, v));
    body += text(left - 8, y + bar_h - 4, b.label, "end", kInk);
    body += fmt::format(
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"2\" fill=\"{}\"><title>{}: {}</title></rect>\n", px(x0),
        px(y), px(std::max(x1 - x0, 0.5)), px(bar_h), b.color, html_escape(b.label), html_escape(b.value_text));
    body += text(W - 8, y + bar_h - 4, b.value_text, "end", kInk);
    y += bar_h + gap;
  }
  if (c.ref) {
    double x = xs(*c.ref);
    body += line(x, top - 2, x, top + plot_h, "#111827", 1.5, " stroke-dasharray=\"5 3\"");
  }
  body += axis_titles(c.x_title, "", left, W - right, top, top + plot_h, H - 6);
  return svg_open(c.width, static_cast<int>(std::ceil(H)), c.title) + title_text(c.title, W) + leg_svg + body +
         "</svg>\n";
}

// ---- grouped vertical bars ----

std::string svg_grouped_bars(const GroupedBarChart& c) {
  double W = c.width, H = c.height;
  double vmin = 0.0, vmax = 0.0;
  std::vector<LegendItem> leg;
  for (const auto& s : c.series) {
    leg.push_back({s.name, s.color, false});
    for (const auto& v : s.values)
      if (v && std::isfinite(*v)) {
        vmin = std::min(vmin, *v);
        vmax = std::max(vmax, *v);
      }
  }
  double top = 40.0;
  double left = 60.0, right = 14.0;
  std::string leg_svg = legend_rows(leg, left, top, W - left - right);
  top += 10.0;  // room for value labels above the tallest bar
  double max_label = 0.0;
  for (const auto& l : c.categories) max_label = std::max(max_label, text_width(l, kFont));
  double plot_w = W - left - right;
  double group_w = plot_w / static_cast<double>(std::max<size_t>(c.categories.size(), 1));
  bool rotate = max_label + 6.0 > group_w;
  double bottom = rotate ? 22.0 + max_label * 0.6 : 24.0;
  if (!c.x_title.empty()) bottom += 18.0;
  Ticks yt = nice_ticks(vmin, vmax > vmin ? vmax : vmin + 1.0, 5);
  Scale ys{yt.lo, yt.hi, H - bottom, top};

  std::string body = y_axis(yt, ys, left, W - right, c.percent);
  double ns = static_cast<double>(std::max<size_t>(c.series.size(), 1));
  double bar_w = std::min(28.0, group_w * 0.8 / ns);
  for (size_t g = 0; g < c.categories.size(); g++) {
    double gx = left + group_w * (static_cast<double>(g) + 0.5);
    double x = gx - bar_w * ns / 2.0;
    for (const auto& s : c.series) {
      const auto v = g < s.values.size() ? s.values[g] : std::nullopt;
      if (v && std::isfinite(*v)) {
        double y0 = ys(std::max(0.0, *v)), y1 = ys(std::min(0.0, *v));
        std::string vt = c.percent ? fmt::format("{:.2f}%", *v * 100.0) : value_text(*v, std::max(c.value_decimals, 0));
        body += fmt::format(
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"><title>{} · {}: {}</title></rect>\n",
            px(x + 1), px(y0), px(bar_w - 2), px(std::max(y1 - y0, 0.5)), s.color, html_escape(s.name),
            html_escape(c.categories[g]), vt);
        if (c.value_decimals >= 0 && bar_w >= 18.0)
          body += text(x + bar_w / 2, y0 - 3, vt, "middle", kMuted, " font-size=\"9\"");
      }
      x += bar_w;
    }
    double ly = H - bottom + 16;
    if (rotate)
      body += text(gx, ly - 4, c.categories[g], "end", kMuted, fmt::format(" transform=\"rotate(-35 {} {})\"", px(gx), px(ly - 4)));
    else
      body += text(gx, ly, c.categories[g], "middle", kMuted);
  }
  body += axis_titles(c.x_title, c.y_title, left, W - right, top, H - bottom, H - 6);
  return svg_open(c.width, c.height, c.title) + title_text(c.title, W) + leg_svg + body + "</svg>\n";
}

// ---- histogram ----

std::string svg_histogram(const HistogramChart& c) {
  double W = c.width, H = c.height;
  double left = 44.0, right = 10.0, top = 30.0, bottom = 24.0;
  double d0 = c.lo, d1 = c.hi;
  for (const auto& m : c.markers)
    if (std::isfinite(m.x)) {
      d0 = std::min(d0, m.x);
      d1 = std::max(d1, m.x);
    }
  if (!(d1 > d0)) d0 -= 1.0, d1 += 1.0;
  double pad = (d1 - d0) * 0.03;
  Ticks xt = nice_ticks(d0 - pad, d1 + pad, 5);
  Scale xs{xt.lo, xt.hi, left, W - right};

  double cmax = 0.0;
  for (double v : c.counts) cmax = std::max(cmax, std::isfinite(v) ? v : 0.0);
  std::string body;
  // y axis: log10(1 + count) with decade ticks, or linear nice ticks.
  if (c.log_y) {
    double top_dec = std::ceil(std::log10(std::max(cmax, 1.0)) - 1e-9);
    if (top_dec < 1.0) top_dec = 1.0;
    Scale ys{0.0, std::log10(1.0 + std::pow(10.0, top_dec)), H - bottom, top};
    int step = top_dec > 4 ? 2 : 1;
    for (int d = 0; d <= static_cast<int>(top_dec); d += step) {
      double v = std::pow(10.0, d);
      double y = ys(std::log10(1.0 + v));
      body += line(left, y, W - right, y, kGrid, 1.0);
      body += text(left - 5, y + 4, d < 4 ? fmt::format("{:g}", v) : fmt::format("1e{}", d), "end", kMuted,
                   " font-size=\"10\"");
    }
    std::string path;
    double bw = (c.hi - c.lo) / static_cast<double>(std::max<size_t>(c.counts.size(), 1));
    for (size_t i = 0; i < c.counts.size(); i++) {
      if (!(c.counts[i] > 0.0)) continue;
      double x0 = xs(c.lo + bw * static_cast<double>(i)), x1 = xs(c.lo + bw * static_cast<double>(i + 1));
      double y = ys(std::log10(1.0 + c.counts[i]));
      path += fmt::format("M{} {}H{}V{}H{}Z", px(x0), px(H - bottom), px(std::max(x1, x0 + 0.6)), px(y), px(x0));
    }
    body += fmt::format("<path d=\"{}\" fill=\"#94a3b8\"/>\n", path);
  } else {
    Ticks yt = nice_ticks(0.0, std::max(cmax, 1.0), 4);
    Scale ys{yt.lo, yt.hi, H - bottom, top};
    body += y_axis(yt, ys, left, W - right, false);
    std::string path;
    double bw = (c.hi - c.lo) / static_cast<double>(std::max<size_t>(c.counts.size(), 1));
    for (size_t i = 0; i < c.counts.size(); i++) {
      if (!(c.counts[i] > 0.0)) continue;
      double x0 = xs(c.lo + bw * static_cast<double>(i)), x1 = xs(c.lo + bw * static_cast<double>(i + 1));
      path += fmt::format("M{} {}H{}V{}H{}Z", px(x0), px(H - bottom), px(std::max(x1, x0 + 0.6)), px(ys(c.counts[i])),
                          px(x0));
    }
    body += fmt::format("<path d=\"{}\" fill=\"#94a3b8\"/>\n", path);
  }
  body += line(left, H - bottom, W - right, H - bottom, kAxis, 1.0);
  for (double v : xt.at) {
    double x = xs(v);
    body += line(x, H - bottom, x, H - bottom + 3, kAxis, 1.0);
    body += text(x, H - bottom + 14, tick_label(v, xt.step, false), "middle", kMuted, " font-size=\"10\"");
  }
  for (const auto& m : c.markers) {
    if (!std::isfinite(m.x)) continue;
    double x = xs(m.x);
    body += fmt::format(
        "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"{3}\" stroke-width=\"1.6\"{4}><title>{5}: {6:.4g}"
        "</title></line>\n",
        px(x), px(top - 4), px(H - bottom), m.color, m.dashed ? " stroke-dasharray=\"4 3\"" : "", html_escape(m.label),
        m.x);
  }
  std::string t = text(left, 16, c.title, "start", kInk, " font-size=\"13\" font-weight=\"600\"");
  return svg_open(c.width, c.height, c.title) + t + body + "</svg>\n";
}

}  // namespace lowbit::report
