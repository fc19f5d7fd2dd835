// Helpers shared by the subcommands.
#include "cli.h"

#include <sys/stat.h>
#include <unistd.h>

#include "lowbit/core.h"
#include "lowbit/io.h"

namespace lowbit::cli {

void add_common(CLI::App* sub, Common& c, bool with_threads) {
  sub->add_option("--json", c.json, "Also write the figures to this JSON file");
  sub->add_flag("--quiet,-q", c.quiet, "No progress output");
  if (with_threads) sub->add_option("--threads", c.threads, "Threads (0 = all cores)")->check(CLI::NonNegativeNumber);
}

void apply(const Common& c) {
  set_threads(c.threads);
  if (!c.json.empty()) check_output_path(c.json, "--json");
}

void write_json(const Common& c, const nlohmann::json& j) {
  if (!c.json.empty()) write_file_atomic(c.json, j.dump(2) + "\n");
}

bool show_progress(const Common& c) { return !c.quiet && isatty(STDERR_FILENO); }

void check_output_path(const std::string& path, const std::string& flag) {
  struct stat st{};
  if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) throw Error(flag + " " + path + ": is a directory");
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  if (dir.empty()) dir = "/";
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) throw Error(flag + " " + path + ": folder " + dir + " does not exist");
  if (access(dir.c_str(), W_OK) != 0) throw Error(flag + " " + path + ": folder " + dir + " is not writable");
}

}  // namespace lowbit::cli
