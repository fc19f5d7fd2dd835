// lowbit: from FP32 training to integer-only low-bit inference. One binary, one subcommand per
// stage (DESIGN.md section 2). Errors: a message naming the file, field or flag; exit status 1.
#include <cstdio>

#include "calc.h"
#include "cli.h"
#include "lowbit/core.h"

int main(int argc, char** argv) {
  CLI::App app{"lowbit: train small CNNs, quantize them (PTQ, QAT, ABC-Net) and run them integer-only on the CPU"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "lowbit 0.1");
  lowbit::cli::add_train_commands(app);
  lowbit::cli::add_bench_command(app);
  add_calc_command(app);
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
