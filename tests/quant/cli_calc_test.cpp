// Tests of `lowbit calc` through the CLI binary (LOWBIT_CLI_PATH): the seed check values come back
// in the --json output, and bad input fails with a message naming the flag.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

using nlohmann::json;

namespace {

struct CliResult {
  int status = -1;
  std::string output;  // stdout and stderr
  json j;              // the --json file, null when absent
};

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Runs `lowbit calc ARGS --json FILE` and reads FILE back.
CliResult run_calc(const std::string& args) {
  static int counter = 0;
  const std::string base =
      ::testing::TempDir() + "lowbit_calc_" + std::to_string(getpid()) + "_" + std::to_string(counter++);
  const std::string json_path = base + ".json", out_path = base + ".out";
  const std::string cmd =
      std::string(LOWBIT_CLI_PATH) + " calc " + args + " --json " + json_path + " > " + out_path + " 2>&1";
  CliResult r;
  r.status = std::system(cmd.c_str());
  r.output = slurp(out_path);
  const std::string text = slurp(json_path);
  if (!text.empty()) r.j = json::parse(text);
  std::remove(json_path.c_str());
  std::remove(out_path.c_str());
  return r;
}

#define EXPECT_OK(r, args) \
  ASSERT_EQ((r).status, 0) << "lowbit calc " << (args) << "\n" << (r).output;

}  // namespace

TEST(CliCalc, QuantizeCourseQ3aWithCourseScale) {
  // Seed 000 Q3(a): s = 2.2/8 = 0.275 (the course's amax/2^(b-1), given explicitly), floor.
  const std::string args = "quantize --values=-2.2,-1.1,1.1,2.2 --bits 4 --rounding floor --scale 0.275";
  const CliResult r = run_calc(args);
  EXPECT_OK(r, args);
  EXPECT_EQ(r.j["q"], json({-8, -4, 4, 7})) << r.output;
  EXPECT_NEAR(r.j["scale"].get<double>(), 0.275, 1e-7);
  EXPECT_EQ(r.j["zero_point"], 0);
  EXPECT_NE(r.output.find("(clamped)"), std::string::npos) << r.output;  // 8 clamps to 7
}

TEST(CliCalc, QuantizeQ3aDesignScale) {
  // DESIGN's s = amax / qmax = 2.2 / 7: x/s = -7, -3.5, 3.5, 7 -> floor [-7, -4, 3, 7].
  const std::string args = "quantize --values=-2.2,-1.1,1.1,2.2 --bits 4 --rounding floor";
  const CliResult r = run_calc(args);
  EXPECT_OK(r, args);
  EXPECT_EQ(r.j["q"], json({-7, -4, 3, 7})) << r.output;
  EXPECT_NEAR(r.j["scale"].get<double>(), 2.2 / 7, 1e-7);
}

TEST(CliCalc, QuantizeQ3bNarrowNearest) {
  // Seed 000 Q3(b): narrow [-7, 7], s = 4.4/14, nearest -> [-7, -4, 4, 7], dequantized
  // [-2.2, -1.257, 1.257, 2.2] (the course's [-2.2, -1.1, 1.1, 2.2] is a slip).
  const std::string args = "quantize --values -2.2,-1.1,1.1,2.2 --bits 4 --narrow --rounding nearest";
  const CliResult r = run_calc(args);
  EXPECT_OK(r, args);
  EXPECT_EQ(r.j["q"], json({-7, -4, 4, 7})) << r.output;
  EXPECT_NEAR(r.j["scale"].get<double>(), 4.4 / 14, 1e-7);
  EXPECT_EQ(r.j["qmin"], -7);
  const double expect[] = {-2.2, -1.257, 1.257, 2.2};
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(r.j["dequantized"][i].get<double>(), expect[i], 5e-4) << "i=" << i;
}

TEST(CliCalc, QuantizeAffineAndRange) {
  // [-1, 3] on 8 bits: s = 4/255, z = round(-128 + 63.75) = -64.
  std::string args = "quantize --values=-1,0,3 --bits 8 --scheme affine";
  CliResult r = run_calc(args);
  EXPECT_OK(r, args);
  EXPECT_NEAR(r.j["scale"].get<double>(), 4.0 / 255, 1e-8);
  EXPECT_EQ(r.j["zero_point"], -64);
  EXPECT_EQ(r.j["q"], json({-128, -64, 127}));
  EXPECT_EQ(r.j["dequantized"][1], 0.0);
  // --range: s = 1/127, 0.5 / s = 63.5 ties to even 64; 2 clamps to 127.
  args = "quantize --values=0.5,2 --bits 8 --range=-1,1";
  r = run_calc(args);
  EXPECT_OK(r, args);
  EXPECT_NEAR(r.j["scale"].get<double>(), 1.0 / 127, 1e-9);
  EXPECT_EQ(r.j["q"], json({64, 127}));
}

TEST(CliCalc, DotNarrowNearest) {
  // a = A of seed 000 Q3, b = [0.5, 0.3, 0.3, 0.5], each with its own range, 4-bit narrow:
  // qa = [-7, -4, 4, 7], s_b = 0.5/7, qb = round([7, 4.2, 4.2, 7]) = [7, 4, 4, 7];
  // integer dot = -49 - 16 + 16 + 49 = 0, float dot = -1.1 - 0.33 + 0.33 + 1.1 = 0.
  const std::string args = "dot --a=-2.2,-1.1,1.1,2.2 --b 0.5,0.3,0.3,0.5 --bits 4 --narrow";
  const CliResult r = run_calc(args);
  EXPECT_OK(r, args);
  EXPECT_EQ(r.j["qa"], json({-7, -4, 4, 7})) << r.output;
  EXPECT_EQ(r.j["qb"], json({7, 4, 4, 7})) << r.output;
  EXPECT_EQ(r.j["int_dot"], 0);
  EXPECT_EQ(r.j["dequantized"], 0.0);
  EXPECT_NEAR(r.j["float"].get<double>(), 0.0, 1e-6);
}

TEST(CliCalc, DotAffineMatchesShiftedCodes) {
  const std::string args = "dot --a=0.1,0.9,-0.3 --b=2,1,0.5 --bits 8 --scheme affine";
  const CliResult r = run_calc(args);
  EXPECT_OK(r, args);
  int64_t dot = 0;
  const int za = r.j["zero_point_a"], zb = r.j["zero_point_b"];
  for (size_t i = 0; i < 3; ++i) dot += (r.j["qa"][i].get<int>() - za) * (r.j["qb"][i].get<int>() - zb);
  EXPECT_EQ(r.j["int_dot"].get<int64_t>(), dot);
  EXPECT_NE(zb, 0);  // b = [0.5, 2] widened to [0, 2]: z = qmin
  const double fdot = 0.1 * 2 + 0.9 * 1 - 0.3 * 0.5;
  EXPECT_NEAR(r.j["float"].get<double>(), fdot, 1e-6);
  EXPECT_NEAR(r.j["dequantized"].get<double>(), fdot, 0.02);
  EXPECT_NEAR(r.j["dequantized"].get<double>(),
              r.j["scale_a"].get<double>() * r.j["scale_b"].get<double>() * static_cast<double>(dot), 1e-6);
}

TEST(CliCalc, KlSeedValues) {
  const CliResult r = run_calc("kl --p 0.2,0.8 --q 0.6,0.4");
  EXPECT_OK(r, "kl");
  EXPECT_NEAR(r.j["forward"].get<double>(), 0.3348, 5e-5);
  EXPECT_NEAR(r.j["reverse"].get<double>(), 0.3819, 5e-5);
  const CliResult inf = run_calc("kl --p 0.5,0.5 --q 1,0");
  EXPECT_OK(inf, "kl inf");
  EXPECT_TRUE(inf.j["forward"].is_null()) << inf.output;  // infinite: Q misses P's support
  EXPECT_NEAR(inf.j["reverse"].get<double>(), std::log(2.0), 1e-12);
}

TEST(CliCalc, KlMergeSeedValues) {
  const CliResult r = run_calc("kl-merge --hist 1,0,2,3,5,3,1,7 --bins 2");
  EXPECT_OK(r, "kl-merge");
  EXPECT_EQ(r.j["merged"], json({6, 16}));
  EXPECT_EQ(r.j["expanded"], json({2, 0, 2, 2, 4, 4, 4, 4}));
  // KL of P/22 against Q/22, by hand: sum p log(p/q) over p > 0.
  const double p[] = {1, 0, 2, 3, 5, 3, 1, 7}, q[] = {2, 0, 2, 2, 4, 4, 4, 4};
  double kl = 0;
  for (int i = 0; i < 8; ++i)
    if (p[i] > 0) kl += p[i] / 22 * std::log(p[i] / q[i]);
  EXPECT_NEAR(r.j["kl"].get<double>(), kl, 1e-12);
}

TEST(CliCalc, AbcWorkedExample) {
  const std::string args = "abc --values=-0.13,0.13,-0.065,0.075 --bases 3";
  const CliResult r = run_calc(args);
  EXPECT_OK(r, args);
  EXPECT_EQ(r.j["bases"], json({{-1, 1, -1, -1}, {-1, 1, -1, 1}, {-1, 1, 1, 1}})) << r.output;
  const double alphas[] = {0.0275, 0.07, 0.0325}, w[] = {-0.13, 0.13, -0.065, 0.075};
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(r.j["alphas"][i].get<double>(), alphas[i], 1e-6);
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(r.j["approx"][i].get<double>(), w[i], 1e-6);
}

TEST(CliCalc, BadInputNamesTheFlag) {
  const struct {
    const char* args;
    const char* flag;
  } cases[] = {
      {"quantize --values=1,abc --bits 8", "--values"},
      {"quantize --values=1,,2 --bits 8", "--values"},
      {"quantize --values=nan --bits 8", "--values"},
      {"quantize --values=1,2 --bits 9", "--bits"},
      {"quantize --values=1,2 --bits 1", "--bits"},
      {"quantize --values=1,2 --scheme asym", "--scheme"},
      {"quantize --values=1,2 --range=1", "--range"},
      {"quantize --values=1,2 --range=2,1", "--range"},
      {"dot --a 1,2,3 --b 1,2 --bits 8", "--a"},
      {"kl --p 0.5,0.5 --q 1,0,0", "--p"},
      {"kl --p 0.5,x --q 1,0", "--p"},
      {"kl --p 0,0 --q 1,1", "--p"},
      {"kl-merge --hist 1,2,3 --bins 4", "--bins"},
      {"abc --values=1,2,3 --bases 6", "--bases"},
  };
  for (const auto& c : cases) {
    const CliResult r = run_calc(c.args);
    EXPECT_NE(r.status, 0) << "lowbit calc " << c.args << " succeeded:\n" << r.output;
    EXPECT_NE(r.output.find(c.flag), std::string::npos) << "lowbit calc " << c.args << "\n" << r.output;
    EXPECT_TRUE(r.j.is_null()) << "lowbit calc " << c.args << " wrote JSON";
  }
  const CliResult empty = run_calc("quantize --values '' --bits 8");
  EXPECT_NE(empty.status, 0) << empty.output;
  EXPECT_NE(empty.output.find("--values: empty list"), std::string::npos) << empty.output;
}
