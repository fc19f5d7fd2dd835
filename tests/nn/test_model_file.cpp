// FP32 model files: round trip, determinism of the bytes, and rejection of damaged files.
#include <gtest/gtest.h>

#include "lowbit/io.h"
#include "lowbit/nn.h"
#include "test_util.h"

namespace lowbit {
namespace {

TEST(ModelFile, RoundTripKeepsArchitectureAndBits) {
  test::TempDir d;
  for (bool bias : {false, true}) {
    Sequential m = build_model("lenet5", bias);
    m.init(5);
    save_model(d.file("m"), m);
    Sequential r = load_model(d.file("m"));
    ASSERT_EQ(r.size(), m.size());
    EXPECT_EQ(r.num_params(), bias ? 61706 : 61470);
    for (size_t i = 0; i < m.size(); ++i) {
      EXPECT_EQ(r.name(i), m.name(i));
      auto pm = m.layer(i).params(), pr = r.layer(i).params();
      ASSERT_EQ(pm.size(), pr.size());
      for (size_t j = 0; j < pm.size(); ++j)
        for (int64_t k = 0; k < pm[j].value->numel(); ++k) ASSERT_EQ((*pm[j].value)[k], (*pr[j].value)[k]);
    }
    Tensor x(Shape{2, 1, 32, 32});
    for (int64_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(i % 7) / 7.0f;
    Tensor a = m.forward(x), b = r.forward(x);
    for (int64_t i = 0; i < a.numel(); ++i) EXPECT_EQ(a[i], b[i]);
    save_model(d.file("m2"), r);
    EXPECT_EQ(test::slurp(d.file("m")), test::slurp(d.file("m2")));
  }
}

TEST(ModelFile, RejectsDamage) {
  test::TempDir d;
  Sequential m = build_model("lenet5", false);
  m.init(1);
  save_model(d.file("m"), m);
  std::string bytes = test::slurp(d.file("m"));
  // Truncated at a few offsets, a flipped weight byte, a bad header length.
  for (size_t cut : {size_t{0}, size_t{4}, size_t{8}, size_t{100}, bytes.size() / 2, bytes.size() - 1}) {
    test::write_bytes(d.file("t"), std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<long>(cut)));
    EXPECT_THROW(load_model(d.file("t")), Error) << cut;
  }
  std::string flipped = bytes;
  flipped[flipped.size() - 5] ^= 0x40;
  test::write_bytes(d.file("f"), std::vector<uint8_t>(flipped.begin(), flipped.end()));
  EXPECT_THROW(load_model(d.file("f")), Error);
  std::string big_header = bytes;
  big_header[5] = 0x7f;
  test::write_bytes(d.file("h"), std::vector<uint8_t>(big_header.begin(), big_header.end()));
  EXPECT_THROW(load_model(d.file("h")), Error);
}

TEST(ModelFile, RejectsNaNWeightsAndWrongKind) {
  test::TempDir d;
  Sequential m = build_model("lenet5", false);
  m.init(1);
  static_cast<Conv2d&>(m.layer(3)).weight[17] = std::numeric_limits<float>::quiet_NaN();
  save_model(d.file("nan"), m);
  try {
    load_model(d.file("nan"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("conv2.weight"), std::string::npos) << e.what();
  }
  SafetensorsFile f;
  f.meta = {{"kind", "quantized"}};
  write_safetensors(d.file("q"), f);
  EXPECT_THROW(load_model(d.file("q")), Error);
}

}  // namespace
}  // namespace lowbit
