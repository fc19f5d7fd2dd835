// End to end: `lowbit quantize` and `lowbit stats` on a tiny data set. A good run writes the model
// file and JSON with the contract keys; each bad input exits non-zero, names the flag or file at
// fault, and writes no output file.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "lowbit/engine.h"
#include "lowbit/nn.h"
#include "lowbit/train.h"
#include "test_util.h"

namespace lowbit {
namespace {

using test::TempDir;

class CliQuantize : public test::TinyModelSuite<60, true, 5> {
 protected:
  static std::string data() { return " --data " + dir->path; }
};

TEST_F(CliQuantize, WritesModelAndJson) {
  TempDir out;
  auto r = test::run_cli("quantize " + model() + data() + " --calibrator kl --samples 40 --threads 1 --out " +
                         out.file("q.st") + " --json " + out.file("q.json"));
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_TRUE(test::file_exists(out.file("q.st"))) << r.out;
  EXPECT_NE(r.out.find("accuracy"), std::string::npos) << r.out;
  nlohmann::json j = nlohmann::json::parse(test::slurp(out.file("q.json")));
  for (const char* k : {"accuracy_fp32", "accuracy_quantized", "accuracy_simulated", "prediction_mismatches",
                        "calibration_seconds", "layers"})
    EXPECT_TRUE(j.contains(k)) << "JSON lacks " << k << ": " << j.dump();
  ASSERT_EQ(j["layers"].size(), 5u);  // conv1..3, fc1, fc2
  for (const char* k : {"name", "s_in", "z_in", "s_out", "z_out", "clip", "calibrator"})
    EXPECT_TRUE(j["layers"][0].contains(k)) << "layer lacks " << k;
  EXPECT_EQ(j["layers"][0]["calibrator"], "kl");
  EXPECT_EQ(j["input"]["calibrator"], "max");
  EXPECT_GE(j["accuracy_fp32"].get<double>(), 0.0);
  // The file loads back as a quantized model with the same op count.
  QModel q = load_qmodel(out.file("q.st"));
  EXPECT_EQ(q.ops.size(), 8u);
  EXPECT_EQ(model_kind(out.file("q.st")), "quantized");

  // Other settings also run: per-channel w4a8, symmetric, floor, float requant, ABC bases.
  r = test::run_cli("quantize " + model() + data() +
                    " --calibrator mse --wbits 4 --per-channel --scheme symmetric --rounding floor --requant float"
                    " --abc-bases 2 --samples 20 --threads 1 --out " + out.file("q4.st"));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(test::file_exists(out.file("q4.st"))) << r.out;
}

TEST_F(CliQuantize, BadInputsFailWithoutOutput) {
  TempDir out;
  // A quantized model as input.
  auto ok = test::run_cli("quantize " + model() + data() + " --samples 10 --threads 1 --out " +
                          out.file("q.st"));
  ASSERT_EQ(ok.status, 0) << ok.out;
  struct Case {
    std::string args, must_mention;
  };
  const std::string m = model();
  const std::vector<Case> cases = {
      {"quantize " + m + data() + " --wbits 9", "--wbits"},
      {"quantize " + m + data() + " --wbits 1", "--wbits"},
      {"quantize " + m + data() + " --abits 9", "--abits"},
      {"quantize " + m + data() + " --calibrator entropy", "--calibrator"},
      {"quantize " + m + data() + " --scheme asym", "--scheme"},
      {"quantize " + m + data() + " --rounding up", "--rounding"},
      {"quantize " + m + data() + " --requant magic", "--requant"},
      {"quantize " + m + data() + " --samples 0", "--samples"},
      {"quantize " + m + data() + " --percentile 0", "--percentile"},
      {"quantize " + m + data() + " --abc-bases 9", "--abc-bases"},
      {"quantize " + out.file("q.st") + data(), "quantized"},
      {"quantize " + dir->file("missing.st") + data(), "missing.st"},
      {"quantize " + m + " --data " + dir->file("nodata"), "nodata"},
  };
  for (const Case& c : cases) {
    const std::string target = out.file("bad.st");
    auto r = test::run_cli(c.args + " --threads 1 --out " + target);
    EXPECT_NE(r.status, 0) << "lowbit " << c.args << "\n" << r.out;
    EXPECT_NE(r.out.find(c.must_mention), std::string::npos) << "lowbit " << c.args << ": message lacks '"
                                                              << c.must_mention << "':\n" << r.out;
    EXPECT_FALSE(test::file_exists(target)) << "lowbit " << c.args << " wrote " << target;
  }
  // An output folder that does not exist.
  auto r = test::run_cli("quantize " + m + data() + " --out " + out.file("no/such/q.st"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("--out"), std::string::npos) << r.out;
}

TEST_F(CliQuantize, StatsPrintsRangesAndJson) {
  TempDir out;
  auto r = test::run_cli("stats " + model() + data() + " --samples 20 --bins 32 --threads 1 --json " +
                         out.file("s.json"));
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("3-sigma range"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("conv1.weight"), std::string::npos) << r.out;
  nlohmann::json j = nlohmann::json::parse(test::slurp(out.file("s.json")));
  ASSERT_EQ(j["weights"].size(), 10u);
  ASSERT_EQ(j["activations"].size(), 13u);  // input + 12 layers
  const auto& h = j["activations"][0]["histogram"];
  EXPECT_EQ(h["counts"].size(), 32u);
  EXPECT_EQ(h["edges"].size(), 33u);
  int64_t total = 0;
  for (const auto& c : h["counts"]) total += c.get<int64_t>();
  EXPECT_EQ(total, 20 * 1024);

  r = test::run_cli("stats " + model() + data() + " --bins 0 --json " + out.file("bad.json"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("--bins"), std::string::npos) << r.out;
  EXPECT_FALSE(test::file_exists(out.file("bad.json")));
}

}  // namespace
}  // namespace lowbit
