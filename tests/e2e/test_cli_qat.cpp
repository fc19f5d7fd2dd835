// End to end: `lowbit qat` on a tiny data set. A good run writes an integer model the engine loads
// and JSON with the contract keys; bad flags, a quantized input model and a diverging run exit
// non-zero, name the flag or file at fault, and write no output file.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "lowbit/engine.h"
#include "lowbit/nn.h"
#include "lowbit/train.h"
#include "test_util.h"

namespace lowbit {
namespace {

using test::TempDir;

class CliQat : public test::TinyModelSuite<60, false, 4> {
 protected:
  static std::string data() { return " --data " + dir->path + " --threads 1 --samples 30 --batch 16"; }
};

TEST_F(CliQat, WritesModelAndJson) {
  TempDir out;
  auto r = test::run_cli("qat " + model() + data() + " --wbits 4 --abits 4 --epochs 2 --fp32-baseline --out " +
                         out.file("q.st") + " --json " + out.file("q.json"));
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_TRUE(test::file_exists(out.file("q.st"))) << r.out;
  EXPECT_NE(r.out.find("epoch  2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("engine test accuracy"), std::string::npos) << r.out;
  nlohmann::json j = nlohmann::json::parse(test::slurp(out.file("q.json")));
  for (const char* k : {"accuracy", "accuracy_fake_quant", "loss_curve", "epochs", "fp32_accuracy",
                        "fp32_finetuned_accuracy", "ptq_accuracy", "config"})
    EXPECT_TRUE(j.contains(k)) << "JSON lacks " << k << ": " << j.dump();
  ASSERT_EQ(j["epochs"].size(), 2u);
  EXPECT_EQ(j["config"]["wbits"], 4);
  // The written model is what the JSON reports: the engine's accuracy on it again.
  QModel q = load_qmodel(out.file("q.st"));
  EXPECT_EQ(q.ops[0].wbits, 4);
  EXPECT_EQ(q.input.bits, 4);
  Engine e(q);
  Dataset te = load_split(dir->path, false);
  EXPECT_DOUBLE_EQ(engine_accuracy(e, te.images, te.labels), j["accuracy"].get<double>());
}

TEST_F(CliQat, AbcBasesWritesEightBitWeights) {
  TempDir out;
  auto r = test::run_cli("qat " + model() + data() + " --abc-bases 2 --per-channel --epochs 1 --out " + out.file("q.st"));
  ASSERT_EQ(r.status, 0) << r.out;
  QModel q = load_qmodel(out.file("q.st"));
  EXPECT_EQ(q.ops[0].abc_bases, 2);
  EXPECT_EQ(q.ops[0].wbits, 8);
  EXPECT_NE(r.out.find("8-bit"), std::string::npos) << r.out;
}

TEST_F(CliQat, BadInputNamesTheFlagAndWritesNothing) {
  TempDir out;
  const std::string o = " --out " + out.file("q.st") + " --json " + out.file("q.json");
  const std::pair<std::string, std::string> cases[] = {
      {"--abc-bases 0", "--abc-bases"}, {"--abc-bases 6", "--abc-bases"}, {"--wbits 1", "--wbits"},
      {"--wbits 9", "--wbits"},         {"--abits 1", "--abits"},         {"--abits 9", "--abits"},
      {"--ste pact", "--ste"},          {"--epochs 0", "--epochs"},       {"--abc-bases 3 --wbits 4", "--wbits"},
  };
  for (const auto& [flags, name] : cases) {
    auto r = test::run_cli("qat " + model() + data() + " " + flags + o);
    EXPECT_NE(r.status, 0) << flags << ": " << r.out;
    EXPECT_NE(r.out.find(name), std::string::npos) << flags << ": " << r.out;
    EXPECT_FALSE(test::file_exists(out.file("q.st"))) << flags;
    EXPECT_FALSE(test::file_exists(out.file("q.json"))) << flags;
  }
}

TEST_F(CliQat, QuantizedModelIsRefusedWithAHint) {
  TempDir out;
  auto good = test::run_cli("qat " + model() + data() + " --epochs 1 --out " + out.file("q.st"));
  ASSERT_EQ(good.status, 0) << good.out;
  auto r = test::run_cli("qat " + out.file("q.st") + data() + " --epochs 1 --out " + out.file("q2.st"));
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("quantized"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("FP32"), std::string::npos) << r.out;
  EXPECT_FALSE(test::file_exists(out.file("q2.st")));
}

TEST_F(CliQat, DivergingRunSaysSoAndWritesNothing) {
  TempDir out;
  auto r = test::run_cli("qat " + model() + data() + " --lr 1e30 --epochs 2 --out " + out.file("q.st") + " --json " +
                         out.file("q.json"));
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("diverged"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("nothing written"), std::string::npos) << r.out;
  EXPECT_FALSE(test::file_exists(out.file("q.st")));
  // The JSON still says what happened.
  ASSERT_TRUE(test::file_exists(out.file("q.json")));
  nlohmann::json j = nlohmann::json::parse(test::slurp(out.file("q.json")));
  EXPECT_TRUE(j["diverged"].get<bool>());
  EXPECT_TRUE(j["accuracy"].is_null());
}

}  // namespace
}  // namespace lowbit
