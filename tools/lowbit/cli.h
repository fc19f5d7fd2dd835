// Shared pieces of the lowbit command line: registration of subcommands and small helpers.
#pragma once

#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace lowbit::cli {

// Options most subcommands share.
struct Common {
  std::string json;    // --json FILE
  bool quiet = false;  // --quiet
  int threads = 0;     // --threads (0 = all cores)
};
void add_common(CLI::App* sub, Common& c, bool with_threads = true);
// Applies --threads; call at the start of every callback.
void apply(const Common& c);
// Writes --json output atomically when requested.
void write_json(const Common& c, const nlohmann::json& j);
// True when progress should be shown (stderr is a terminal and not --quiet).
bool show_progress(const Common& c);
// Output files: refuse to overwrite a directory, and say when the folder does not exist.
void check_output_path(const std::string& path, const std::string& flag);

void add_train_commands(CLI::App& app);  // train, eval, summary
void add_bench_command(CLI::App& app);
void add_run_command(CLI::App& app);
void add_analyze_command(CLI::App& app);
void add_qat_command(CLI::App&);
void add_quantize_command(CLI::App& app);
void add_stats_command(CLI::App& app);
}  // namespace lowbit::cli
