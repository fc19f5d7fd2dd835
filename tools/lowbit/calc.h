// `lowbit calc`: the arithmetic of quantization by hand (DESIGN.md section 2): quantize, dot, kl,
// kl-merge, abc. Registered by main.cpp.
#pragma once

#include <CLI/CLI.hpp>

void add_calc_command(CLI::App& app);
