// The configuration of `lowbit run`: its defaults (every key) and the strict overlay of a user's
// JSON on them. Kept apart from the command so the config reader can be fuzzed alone.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace lowbit::cli {

nlohmann::json default_config();
// Checks `user` against the defaults' shape: unknown keys and wrong types are lowbit::Errors that
// name the key and what is allowed. Returns the defaults overlaid with `user`.
nlohmann::json merge_config(const nlohmann::json& dflt, const nlohmann::json& user, const std::string& path);

}  // namespace lowbit::cli
