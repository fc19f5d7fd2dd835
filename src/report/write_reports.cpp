// write_reports: results.json, report.md and report.html into one folder, each written atomically.
// Not here: rendering (render_markdown.cpp, render_html.cpp).
#include <filesystem>
#include <string>
#include <system_error>

#include "lowbit/io.h"
#include "lowbit/report.h"

namespace lowbit {

void write_reports(const nlohmann::json& results, const std::string& dir) {
  if (dir.empty()) throw Error("reports: the output folder name is empty");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error("reports: cannot create folder '" + dir + "': " + ec.message());
  if (!std::filesystem::is_directory(dir, ec)) throw Error("reports: '" + dir + "' is not a folder");
  // Render everything first, so a rendering problem never leaves a half-updated folder.
  std::string json_text = results.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::string md = render_markdown(results);
  std::string html = render_html(results);
  try {
    write_file_atomic(dir + "/results.json", json_text);
    write_file_atomic(dir + "/report.md", md);
    write_file_atomic(dir + "/report.html", html);
  } catch (const Error& e) {
    throw Error("reports: cannot write into folder '" + dir + "': " + e.what());
  }
}

}  // namespace lowbit
