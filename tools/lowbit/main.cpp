// lowbit: from FP32 training to integer-only low-bit inference. One binary, one subcommand per
// stage (DESIGN.md section 2). Errors: a message naming the file, field or flag; exit status 1.
#include <cstdio>
#include <string>

#include "calc.h"
#include "cli.h"
#include "lowbit/core.h"

int main(int argc, char** argv) {
  CLI::App app{"lowbit: train small CNNs, quantize them (PTQ, QAT, ABC-Net) and run them integer-only on the CPU"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "lowbit 0.1");
  lowbit::cli::add_run_command(app);
  lowbit::cli::add_analyze_command(app);
  lowbit::cli::add_train_commands(app);
  lowbit::cli::add_bench_command(app);
  lowbit::cli::add_qat_command(app);
  lowbit::cli::add_quantize_command(app);
  lowbit::cli::add_stats_command(app);
  add_calc_command(app);
  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands({})) {
      known = known || sub->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::fprintf(stderr, "lowbit: error: unknown command '%s' (commands: %s; see lowbit --help)\n", argv[1], names.c_str());
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const lowbit::Error& e) {
    std::fprintf(stderr, "lowbit: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lowbit: internal error: %s\n", e.what());
    return 1;
  }
  return 0;
}
