// libFuzzer target for the `lowbit run --config` reader: JSON text -> strict overlay on the
// defaults. Properties: no crash; nothing thrown but lowbit::Error or a JSON parse error; an
// accepted config has exactly the default keys, with the defaults' types.
//
// FUZZ_SOURCES: tools/lowbit/run_config.cpp src/core/core.cpp
// FUZZ_LIBS: -fopenmp
#include <cstdint>
#include <cstdlib>
#include <string>

#include "../tools/lowbit/run_config.h"
#include "lowbit/core.h"

static void same_shape(const nlohmann::json& a, const nlohmann::json& b) {
  if (a.type() != b.type() && !(a.is_number() && b.is_number())) std::abort();
  if (!a.is_object()) return;
  if (a.size() != b.size()) std::abort();
  for (auto it = a.begin(); it != a.end(); ++it) {
    if (!b.contains(it.key())) std::abort();
    same_shape(it.value(), b[it.key()]);
  }
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nlohmann::json dflt = lowbit::cli::default_config();
  nlohmann::json user = nlohmann::json::parse(data, data + size, nullptr, false);
  if (user.is_discarded()) return 0;
  try {
    nlohmann::json merged = lowbit::cli::merge_config(dflt, user, "");
    same_shape(dflt, merged);
  } catch (const lowbit::Error&) {
  }
  return 0;
}
