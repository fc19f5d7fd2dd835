// Determinism end to end: every command that writes a model (train, quantize with each
// calibrator, qat with each STE and ABC-Net) run twice with the same seed and thread count writes
// the same bytes. Calibration does not depend on the thread count either (exact histogram counts,
// per-image forward passes), so quantize with 1 and 2 threads must agree too. The engine's
// outputs for 1 and 2 threads are compared in tests/engine (Engine.ThreadsDoNotChangeBits) and
// by `lowbit eval` below.
#include <gtest/gtest.h>

#include <string>

#include "test_util.h"

namespace lowbit {
namespace {

using test::TempDir;

class CliDeterminism : public test::TinyModelSuite<60, false, 5> {
 protected:
  static std::string data() { return " -q --data " + dir->path; }
  // Runs `args --out FILE` in a fresh folder and returns FILE's bytes.
  static std::string output_of(const std::string& args) {
    TempDir out;
    auto r = test::run_cli(args + " --out " + out.file("o.st"));
    EXPECT_EQ(r.status, 0) << args << "\n" << r.out;
    std::string bytes = test::slurp(out.file("o.st"));
    EXPECT_GT(bytes.size(), 1000u) << args;
    return bytes;
  }
};

TEST_F(CliDeterminism, TrainTwiceSameBytes) {
  for (const char* threads : {"1", "2"}) {
    const std::string args = "train" + data() + " --epochs 2 --batch 16 --seed 7 --threads " + threads;
    EXPECT_EQ(output_of(args), output_of(args)) << args;
  }
  // A different seed must change the bytes, or the comparison above proves nothing.
  EXPECT_NE(output_of("train" + data() + " --epochs 1 --batch 16 --seed 7 --threads 1"),
            output_of("train" + data() + " --epochs 1 --batch 16 --seed 8 --threads 1"));
}

TEST_F(CliDeterminism, QuantizeTwiceAndAcrossThreadsSameBytes) {
  for (const char* calib : {"max", "3sigma", "percentile", "kl", "mse"}) {
    const std::string args = "quantize " + model() + data() + " --samples 40 --calib-batch 16 --wbits 4 --abits 6 --per-channel --calibrator " + calib;
    const std::string one = output_of(args + " --threads 1");
    EXPECT_EQ(one, output_of(args + " --threads 1")) << calib;
    EXPECT_EQ(one, output_of(args + " --threads 2")) << calib;
  }
}

TEST_F(CliDeterminism, QatTwiceSameBytes) {
  for (const char* extra : {" --wbits 4 --ste clipped", " --wbits 4 --ste lsq", " --wbits 8 --abc-bases 2 --per-channel"}) {
    const std::string args = "qat " + model() + data() + " --samples 30 --batch 16 --epochs 2 --abits 4 --threads 2" + extra;
    EXPECT_EQ(output_of(args), output_of(args)) << extra;
  }
}

TEST_F(CliDeterminism, EvalSameAccuracyForOneAndTwoThreads) {
  TempDir out;
  const std::string q = out.file("q.st");
  ASSERT_EQ(test::run_cli("quantize " + model() + data() + " --samples 40 --out " + q).status, 0);
  std::string figures[2];
  for (int t = 1; t <= 2; ++t) {
    auto r = test::run_cli("eval " + q + data() + " --threads " + std::to_string(t) + " --json " + out.file("e.json"));
    ASSERT_EQ(r.status, 0) << r.out;
    figures[t - 1] = test::slurp(out.file("e.json"));
  }
  EXPECT_EQ(figures[0], figures[1]);
}

}  // namespace
}  // namespace lowbit
