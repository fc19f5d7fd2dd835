// lowbit run end to end on a tiny data set: a small config finishes and writes the three reports
// from one results.json; config errors name the key; Ctrl-C keeps the finished figures; analyze.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace lowbit {
namespace {

std::string small_config(const std::string& data, int epochs) {
  nlohmann::json c = {
      {"data", data},
      {"threads", 1},
      {"train", {{"epochs", epochs}, {"batch", 16}}},
      {"stats", {{"samples", 50}}},
      {"ptq", {{"samples", 50}, {"calibrators", {"max", "kl"}}, {"bit_widths", {{8, 8}, {4, 4}}}, {"granularity", {"per-tensor", "per-channel"}},
               {"requant", {"fixedpoint", "float"}}, {"rounding", {"nearest"}}, {"sweep", nlohmann::json::array()}}},
      {"qat", {{"epochs", 1}, {"bit_widths", {{4, 4}}}, {"abc_bases", {2}}}},
      {"analysis", {{"images", 40}}},
      {"bench", {{"batch", 8}, {"windows", 1}}}};
  return c.dump();
}

TEST(CliRun, SmallConfigWritesReports) {
  test::TempDir d;
  test::write_tiny_dataset(d.file(""), 200, true);
  test::write_bytes(d.file("cfg.json"), [&] { std::string s = small_config(d.path, 2); return std::vector<uint8_t>(s.begin(), s.end()); }());
  test::RunResult r = test::run_cli("run -q --config " + d.file("cfg.json") + " --out " + d.file("out"));
  ASSERT_EQ(r.status, 0) << r.out;
  nlohmann::json res = nlohmann::json::parse(test::slurp(d.file("out/results.json")));
  EXPECT_EQ(res["training"]["epochs"].size(), 2u);
  EXPECT_EQ(res["ptq"].size(), 9u);  // 2 bit widths x 2 granularities x 2 calibrators + float requant
  EXPECT_EQ(res["qat"].size(), 2u);  // w4a4 and ABC M=2
  EXPECT_FALSE(res["sqnr"].empty());
  EXPECT_EQ(res["bench"].size(), 2u);
  EXPECT_FALSE(res["interrupted"].get<bool>());
  std::string md = test::slurp(d.file("out/report.md")), html = test::slurp(d.file("out/report.html"));
  // One source: the accuracies in the reports are those of results.json.
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", 100 * res["ptq"][0]["accuracy"].get<double>());
  EXPECT_NE(md.find(buf), std::string::npos) << buf;
  EXPECT_NE(html.find(buf), std::string::npos) << buf;
  EXPECT_NE(html.find("<svg"), std::string::npos);
  // analyze on what run wrote.
  test::RunResult a = test::run_cli("analyze " + d.file("out/lenet5.safetensors") + " " + d.file("out/lenet5-w8a8.safetensors") +
                                    " --data " + d.path + " --images 20 --json " + d.file("an.json"));
  ASSERT_EQ(a.status, 0) << a.out;
  nlohmann::json an = nlohmann::json::parse(test::slurp(d.file("an.json")));
  EXPECT_EQ(an["layers"].size(), 7u);  // conv1 pool1 conv2 pool2 conv3 fc1 fc2
  EXPECT_EQ(an["sensitivity"].size(), 5u);
}

TEST(CliRun, ConfigErrorsNameTheKey) {
  test::TempDir d;
  struct Case {
    std::string json, mention;
  };
  for (const Case& c : {Case{R"({"trian": {}})", "trian"}, Case{R"({"train": {"epochs": "ten"}})", "train.epochs"},
                        Case{R"({"train": {"epochs": 0}})", "train.epochs"}, Case{R"({"ptq": {"calibrators": ["entropy"]}})", "ptq.calibrators"},
                        Case{R"({"ptq": {"bit_widths": [[9, 8]]}})", "ptq.bit_widths"}, Case{R"({"qat": {"abc_bases": [7]}})", "qat.abc_bases"},
                        Case{R"({"threads": 1.5})", "threads"}, Case{R"([1, 2])", "object"}, Case{R"({"train": )", "not valid JSON"}}) {
    test::write_bytes(d.file("c.json"), std::vector<uint8_t>(c.json.begin(), c.json.end()));
    test::RunResult r = test::run_cli("run -q --config " + d.file("c.json") + " --out " + d.file("out"));
    EXPECT_NE(r.status, 0) << c.json;
    EXPECT_NE(r.out.find(c.mention), std::string::npos) << c.json << " -> " << r.out;
    EXPECT_FALSE(test::file_exists(d.file("out"))) << c.json;
  }
  test::RunResult r = test::run_cli("run -q --out /proc/lowbit-cannot-write");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("/proc/lowbit-cannot-write"), std::string::npos) << r.out;
  test::RunResult p = test::run_cli("run --print-config");
  ASSERT_EQ(p.status, 0);
  EXPECT_TRUE(nlohmann::json::parse(p.out).contains("qat"));
}

TEST(CliRun, InterruptKeepsFinishedFigures) {
  test::TempDir d;
  test::write_tiny_dataset(d.file(""), 400, false);
  std::string cfg = small_config(d.path, 100000);
  test::write_bytes(d.file("cfg.json"), std::vector<uint8_t>(cfg.begin(), cfg.end()));
  std::string cmd = "timeout -s INT 3 " + std::string(LOWBIT_CLI_PATH) + " run -q --config " + d.file("cfg.json") +
                    " --out " + d.file("out") + " > " + d.file("log") + " 2>&1";
  int rc = std::system(cmd.c_str());
  EXPECT_NE(rc, 0);
  std::string log = test::slurp(d.file("log"));
  EXPECT_NE(log.find("interrupted"), std::string::npos) << log;
  nlohmann::json res = nlohmann::json::parse(test::slurp(d.file("out/results.json")));
  EXPECT_TRUE(res["interrupted"].get<bool>());
  EXPECT_FALSE(res["training"]["epochs"].empty());  // the epochs finished before Ctrl-C are kept
  EXPECT_GE(res["skipped"].size(), 4u);             // statistics, PTQ, QAT, analysis, speed
  EXPECT_TRUE(test::file_exists(d.file("out/report.html")));
}

}  // namespace
}  // namespace lowbit
