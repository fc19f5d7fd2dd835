#include "run_config.h"

#include "lowbit/core.h"

namespace lowbit::cli {

using Json = nlohmann::json;

// Every key of the configuration with its default: `lowbit run --print-config` prints this.
Json default_config() {
  return Json::parse(R"({
  "data": "fashion-mnist",
  "model": "",
  "threads": 0,
  "train": {"epochs": 10, "batch": 64, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0, "seed": 1},
  "stats": {"enabled": true, "samples": 1000, "bins": 64},
  "ptq": {
    "enabled": true,
    "samples": 1000,
    "calibrators": ["max", "3sigma", "percentile", "kl", "mse"],
    "bit_widths": [[8, 8], [4, 8], [4, 4]],
    "granularity": ["per-tensor", "per-channel"],
    "requant": ["fixedpoint", "float", "divide"],
    "rounding": ["nearest", "floor"],
    "sweep": [[6, 6], [3, 3], [2, 8]]
  },
  "qat": {
    "enabled": true,
    "epochs": 2,
    "lr": 0.002,
    "bit_widths": [[4, 4], [8, 8], [6, 6], [4, 8], [3, 3], [2, 8]],
    "abc_bases": [1, 2, 3],
    "ste": "clipped"
  },
  "analysis": {"enabled": true, "images": 500},
  "bench": {"enabled": true, "batch": 256, "windows": 5}
})");
}

// Checks `user` against the defaults' shape: unknown keys, wrong types and impossible values are
// errors that name the key and what is allowed. Returns the defaults overlaid with `user`.
Json merge_config(const Json& dflt, const Json& user, const std::string& path) {
  if (!user.is_object()) throw Error("config" + (path.empty() ? "" : " key \"" + path + "\"") + " must be a JSON object");
  Json out = dflt;
  for (auto it = user.begin(); it != user.end(); ++it) {
    const std::string key = path.empty() ? it.key() : path + "." + it.key();
    if (!dflt.contains(it.key())) {
      std::string allowed;
      for (auto d = dflt.begin(); d != dflt.end(); ++d) allowed += (allowed.empty() ? "" : ", ") + d.key();
      throw Error("config: unknown key \"" + key + "\" (allowed: " + allowed + ")");
    }
    const Json& d = dflt[it.key()];
    const Json& v = it.value();
    if (d.is_object()) {
      out[it.key()] = merge_config(d, v, key);
    } else if (d.is_boolean() != v.is_boolean() || d.is_string() != v.is_string() || d.is_array() != v.is_array() ||
               (d.is_number() && !v.is_number()) || (d.is_number_integer() && !v.is_number_integer())) {
      throw Error("config: key \"" + key + "\" must be " +
                  (d.is_boolean() ? "true or false" : d.is_string() ? "a string" : d.is_array() ? "a list"
                   : d.is_number_integer() ? "an integer" : "a number") + ", got " + v.dump());
    } else {
      out[it.key()] = v;
    }
  }
  return out;
}

}  // namespace lowbit::cli
