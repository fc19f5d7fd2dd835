// lowbit's reports: results.json (every figure of a `lowbit run`) turned into report.md and a
// self-contained report.html (inline CSS, charts as inline SVG, no scripts, no network).
// Not here: computing any figure. The renderers only read, select and format what the JSON holds
// (the one source); the few derived display values (accuracy drop = FP32 - quantized, speed-up and
// size ratios) are labelled as such. The schema is written down in docs/results-schema.md.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace lowbit {

// Both renderers tolerate missing sections (shown as "not run", with results["skipped"] listed in
// the notes) and values of the wrong type (treated as missing). They never throw on any JSON input.
std::string render_markdown(const nlohmann::json& results);
std::string render_html(const nlohmann::json& results);

// Writes dir/results.json, dir/report.md and dir/report.html, each atomically
// (write_file_atomic). Creates dir when absent. Error naming the folder when it cannot be created
// or written.
void write_reports(const nlohmann::json& results, const std::string& dir);

}  // namespace lowbit
