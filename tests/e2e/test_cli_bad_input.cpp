// End-to-end bad input: each case runs the CLI and checks the exit status, that the message names
// the file, field or flag at fault, and that no output appeared and an existing output is unchanged.
#include <gtest/gtest.h>

#include <csignal>
#include <limits>

#include "lowbit/nn.h"
#include "lowbit/train.h"
#include "test_util.h"

namespace lowbit {
namespace {

using test::TempDir;

struct Case {
  std::string name, args, must_mention;
};

class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_tiny_dataset(good.path, 40, true);
    Sequential m = build_model("lenet5", false);
    m.init(1);
    save_model(dir.file("model.st"), m);
    static_cast<Conv2d&>(m.layer(0)).weight[3] = std::numeric_limits<float>::quiet_NaN();
    save_model(dir.file("nan.st"), m);
    std::string bytes = test::slurp(dir.file("model.st"));
    test::write_bytes(dir.file("trunc.st"), std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<long>(bytes.size() / 2)));
    test::write_bytes(dir.file("garbage.st"), {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
    std::string huge = bytes;
    huge[6] = 0x40;  // header length beyond the file
    test::write_bytes(dir.file("hugeheader.st"), std::vector<uint8_t>(huge.begin(), huge.end()));
    test::write_bytes(dir.file("existing.out"), {'k', 'e', 'e', 'p'});
  }

  // A copy of the tiny data set with one file replaced.
  std::string data_with(const std::string& file, const std::vector<uint8_t>& bytes) {
    std::string d = dir.file("data-" + std::to_string(variants++));
    std::string cmd = "cp -r " + good.path + " " + d;
    EXPECT_EQ(std::system(cmd.c_str()), 0);
    std::remove((d + "/" + file + ".gz").c_str());
    test::write_bytes(d + "/" + file, bytes);
    return d;
  }

  void expect_fails(const Case& c) {
    SCOPED_TRACE(c.name + ": lowbit " + c.args);
    test::RunResult r = test::run_cli(c.args);
    EXPECT_NE(r.status, 0) << r.out;
    EXPECT_LT(r.status, 128) << "crashed: " << r.out;
    EXPECT_NE(r.out.find(c.must_mention), std::string::npos) << "message does not mention '" << c.must_mention << "': " << r.out;
    EXPECT_FALSE(test::file_exists(dir.file("out.st"))) << "an output file appeared";
    EXPECT_FALSE(test::file_exists(dir.file("out.json"))) << "a JSON file appeared";
    EXPECT_EQ(test::slurp(dir.file("existing.out")), "keep") << "an existing output changed";
  }

  TempDir dir, good;
  int variants = 0;
};

TEST_F(BadInput, EveryCaseFailsCleanly) {
  const std::string out = " --out " + dir.file("out.st") + " --json " + dir.file("out.json");
  const std::string train = "train --threads 1 --batch 8 --data ";
  auto idx = [](std::vector<int> dims, size_t n, uint8_t v) { return test::idx_bytes(dims, std::vector<uint8_t>(n, v)); };
  std::vector<Case> cases = {
      {"missing folder", train + dir.file("nope") + out, dir.file("nope")},
      {"folder without files", train + dir.path + out, "train-images-idx3-ubyte"},
      {"wrong magic", train + data_with("train-images-idx3-ubyte", {9, 9, 8, 3, 0, 0, 0, 0}) + out, "magic"},
      {"truncated images", train + data_with("train-images-idx3-ubyte", idx({40, 28, 28}, 100, 0)) + out, "truncated"},
      {"count mismatch", train + data_with("train-labels-idx1-ubyte", idx({39}, 39, 1)) + out, "labels"},
      {"label out of range", train + data_with("train-labels-idx1-ubyte", idx({40}, 40, 10)) + out, "label 10"},
      {"corrupt gzip", train + data_with("train-images-idx3-ubyte.gz", {0x1f, 0x8b, 8, 0, 1, 2, 3}) + out, "gzip"},
      {"wrong image size", train + data_with("train-images-idx3-ubyte", idx({40, 27, 28}, 40 * 27 * 28, 0)) + out, "28 x 28"},
      {"unknown model", train + good.path + " --model resnet" + out, "--model"},
      {"zero epochs", "train --epochs 0 --data " + good.path + out, "--epochs"},
      {"zero batch", "train --batch 0 --data " + good.path + out, "--batch"},
      {"zero lr", "train --lr 0 --data " + good.path + out, "--lr"},
      {"negative lr", "train --lr -1 --data " + good.path + out, "--lr"},
      {"unknown optimizer", "train --optimizer rmsprop --data " + good.path + out, "--optimizer"},
      {"NaN loss", train + good.path + " --lr 1e9 --epochs 3" + out, "diverged"},
      {"output folder missing", train + good.path + " --out " + dir.file("no/such/m.st"), "--out"},
      {"output is a directory", train + good.path + " --out " + dir.path, "--out"},
      {"json folder missing", train + good.path + " --out " + dir.file("out.st") + " --json " + dir.file("no/x.json"), "--json"},
      {"resume from a model", train + good.path + " --resume " + dir.file("model.st") + out, "checkpoint"},
      {"eval missing model", "eval " + dir.file("missing.st") + " --data " + good.path + " --json " + dir.file("out.json"), "missing.st"},
      {"eval truncated model", "eval " + dir.file("trunc.st") + " --data " + good.path + " --json " + dir.file("out.json"), "trunc.st"},
      {"eval garbage model", "eval " + dir.file("garbage.st") + " --data " + good.path + " --json " + dir.file("out.json"), "garbage.st"},
      {"eval header beyond end", "eval " + dir.file("hugeheader.st") + " --data " + good.path + " --json " + dir.file("out.json"), "hugeheader.st"},
      {"eval NaN weights", "eval " + dir.file("nan.st") + " --data " + good.path + " --json " + dir.file("out.json"), "conv1.weight"},
      {"eval bad data", "eval " + dir.file("model.st") + " --data " + dir.file("nope") + " --json " + dir.file("out.json"), dir.file("nope")},
      {"summary of an IDX file", "summary " + good.path + "/t10k-labels-idx1-ubyte.gz --json " + dir.file("out.json"), "t10k-labels"},
      {"summary file and --model", "summary " + dir.file("model.st") + " --model lenet5", "--model"},
      {"bench zero batch", "bench " + dir.file("model.st") + " --batch 0 --json " + dir.file("out.json"), "--batch"},
      {"bench train on missing", "bench " + dir.file("missing.st") + " --train", "missing.st"},
      {"calc bits 9", "calc quantize --values 1,2 --bits 9 --json " + dir.file("out.json"), "bits"},
      {"calc non-numeric", "calc quantize --values 1,x --bits 4 --json " + dir.file("out.json"), "--values"},
      {"unknown subcommand", "frobnicate", "frobnicate"},
      {"negative threads", "eval " + dir.file("model.st") + " --threads -2", "--threads"},
      {"existing output kept on failure", train + good.path + " --lr 1e9 --epochs 3 --out " + dir.file("existing.out"), "diverged"},
  };
  ASSERT_GE(cases.size(), 25u);
  for (const Case& c : cases) expect_fails(c);
}

// SIGKILL at several moments of a training run that writes a checkpoint every epoch: the final
// model file keeps its previous bytes, and the checkpoint, when there is one, always loads whole.
TEST(CrashSafety, KillDuringTrainingLeavesWholeFiles) {
  if (!test::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  TempDir d;
  Sequential m = build_model("lenet5", false);
  m.init(2);
  save_model(d.file("m.st"), m);
  const std::string before = test::slurp(d.file("m.st"));
  for (int delay_ms : {300, 900, 1500}) {
    std::string cmd = "timeout -s KILL " + std::to_string(delay_ms / 1000.0) + " " + std::string(LOWBIT_CLI_PATH) +
                      " train --threads 1 --epochs 50 --limit 1000 -q --out " + d.file("m.st") + " > /dev/null 2>&1";
    int rc = std::system(cmd.c_str());
    (void)rc;
    // The run was killed before its end, so the final model keeps its previous bytes.
    std::string now = test::slurp(d.file("m.st"));
    EXPECT_EQ(now, before) << "a killed run must not touch the final model (it is written once at the end)";
    // A checkpoint, when one was written, is always a whole file that loads.
    if (test::file_exists(d.file("m.st.ckpt"))) EXPECT_NO_THROW(checkpoint_config(d.file("m.st.ckpt"))) << delay_ms;
  }
  // The surviving model still loads through the CLI.
  test::RunResult ls = test::run_cli("summary " + d.file("m.st"));
  EXPECT_EQ(ls.status, 0) << ls.out;
}

}  // namespace
}  // namespace lowbit
