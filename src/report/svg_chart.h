// Small inline-SVG charts for report.html: line chart, horizontal bars, grouped vertical bars and
// a histogram with vertical markers. Each returns one <svg> element (no xmlns: inline in HTML5),
// scaled by its viewBox so it shrinks with the page. Hover text uses <title>, never scripts.
// Not here: reading results.json (the caller passes plain numbers) or page layout.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace lowbit::report {

// Colors: a Tableau-10-like palette, readable on white and distinct for common color blindness
// in the first five.
extern const char* const kPalette[10];
const char* palette(size_t i);

std::string html_escape(const std::string& s);

struct LegendItem {
  std::string name;
  std::string color;
  bool dashed = false;
};

struct LineSeries {
  std::string name;
  std::string color;
  std::vector<double> x, y;  // same length; points drawn in order
};

struct LineChart {
  std::string title, x_title, y_title;
  std::vector<LineSeries> series;
  std::vector<std::pair<double, std::string>> x_labels;  // non-empty: categorical ticks at these x
  bool y_percent = false;     // y values are fractions shown as percentages
  bool x_integer = false;     // numeric x ticks only at integers (epochs)
  bool markers = true;        // a dot at each point
  std::optional<double> ref_y;  // horizontal reference line (e.g. FP32 accuracy)
  std::string ref_label;
  int width = 560, height = 320;
};
std::string svg_line_chart(const LineChart& c);

struct HBar {
  std::string label;
  double value = 0.0;
  std::string color;
  std::string value_text;  // printed at the bar's end
};

struct HBarChart {
  std::string title, x_title;
  std::vector<HBar> bars;  // drawn top to bottom in this order
  bool percent = false;
  std::optional<double> ref;
  std::string ref_label;
  std::vector<LegendItem> legend;
  int width = 1180;
};
std::string svg_hbar_chart(const HBarChart& c);

struct BarSeries {
  std::string name;
  std::string color;
  std::vector<std::optional<double>> values;  // one per category; missing draws nothing
};

struct GroupedBarChart {
  std::string title, x_title, y_title;
  std::vector<std::string> categories;
  std::vector<BarSeries> series;
  bool percent = false;
  int value_decimals = 1;  // value labels above bars; negative: none
  int width = 1180, height = 340;
};
std::string svg_grouped_bars(const GroupedBarChart& c);

struct HistMarker {
  double x = 0.0;
  std::string color;
  bool dashed = false;
  std::string label;  // hover text
};

struct HistogramChart {
  std::string title;
  double lo = 0.0, hi = 1.0;      // the bins cover [lo, hi] evenly
  std::vector<double> counts;
  bool log_y = true;
  std::vector<HistMarker> markers;
  int width = 380, height = 200;
};
std::string svg_histogram(const HistogramChart& c);

// A legend as a standalone small <svg> row (for a legend shared by several charts).
std::string svg_legend(const std::vector<LegendItem>& items, int width);

}  // namespace lowbit::report
