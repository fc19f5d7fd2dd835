// QAT (src/train/qat.cpp): the fake-quantized network computes what the integer engine computes on
// the converted QModel (same codes, same logits within float summation noise); weights and biases
// are fake-quantized by the engine's rules; ABC-Net weights in training equal abc_bases(); tiny-data
// QAT runs learn with every STE; a run whose weights become NaN stops and keeps the last good epoch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "lowbit/qat.h"
#include "lowbit/train.h"
#include "test_util.h"

namespace lowbit {
namespace {

// conv(1->4, k3, bias) ReLU max- or avgpool | conv(4->6, k3, bias) ReLU | flatten | fc(54->16, bias) ReLU | fc(16->5, bias)
Sequential tiny_model(uint64_t seed, PoolKind pool = PoolKind::max) {
  Sequential m;
  m.architecture = "tiny";
  m.input_shape = {1, 12, 12};
  m.add(std::make_unique<Conv2d>(1, 4, 3, 1, 0, true), "conv1");
  m.add(std::make_unique<Activation>(ActKind::relu), "act1");
  m.add(std::make_unique<Pool2d>(pool, 2, 2), "pool1");
  m.add(std::make_unique<Conv2d>(4, 6, 3, 1, 0, true), "conv2");
  m.add(std::make_unique<Activation>(ActKind::relu), "act2");
  m.add(std::make_unique<Flatten>(), "flatten");
  m.add(std::make_unique<Linear>(54, 16, true), "fc1");
  m.add(std::make_unique<Activation>(ActKind::relu), "act3");
  m.add(std::make_unique<Linear>(16, 5, true), "fc2");
  m.init(seed);
  return m;
}

Tensor random_images(int n, uint64_t seed) {
  Tensor x({n, 1, 12, 12});
  Rng rng(seed);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = rng.uniform(-1.0f, 1.0f);
  return x;
}

int argmax(const float* row, int c) { return static_cast<int>(std::max_element(row, row + c) - row); }

struct Case {
  int wbits, abits;
  bool per_channel;
  Ste ste;
  int abc;
};

// Fake-quant forward vs the Engine and vs the engine's own float simulation, on the QModel that
// to_qmodel() writes. The first conv's u8 outputs are compared code by code: the fake-quant value
// x_hat = s (q - z) gives q back exactly; the engine gets q by fixed-point requantization of exact
// integer sums (rounding twice, TFLite's way), the network by emulating that rounding on a float
// sum, so they may differ by one step where a value lies within float noise of a rounding
// threshold (about 1e-7 relative: a handful in 100,000), and nowhere else.
TEST(Qat, FakeQuantNetworkMatchesTheEngine) {
  set_threads(1);
  const Case cases[] = {{8, 8, false, Ste::Clipped, 0}, {4, 4, false, Ste::Clipped, 0}, {4, 4, true, Ste::Lsq, 0},
                        {3, 3, true, Ste::Identity, 0}, {8, 8, true, Ste::Clipped, 3}, {8, 6, false, Ste::Lsq, 2}};
  const Tensor calib = random_images(64, 7), x = random_images(300, 8);
  for (PoolKind pool : {PoolKind::max, PoolKind::avg})
  for (const Case& c : cases) {
    QatConfig cfg;
    cfg.wbits = c.wbits, cfg.abits = c.abits, cfg.per_channel = c.per_channel, cfg.ste = c.ste, cfg.abc_bases = c.abc;
    const std::string what = "w" + std::to_string(c.wbits) + "a" + std::to_string(c.abits) + " ste " +
                             ste_name(c.ste) + (c.per_channel ? " per-channel" : "") + " abc " + std::to_string(c.abc) +
                             (pool == PoolKind::avg ? " avgpool" : " maxpool");
    QatNetwork qn(tiny_model(3, pool), calib, cfg);
    const Tensor fq = qn.net().forward(x);
    const QModel q = qn.to_qmodel();
    Tensor eng, sim;
    Engine e(q);
    e.run(x, eng);
    simulate(q, x, sim);
    ASSERT_EQ(fq.shape(), eng.shape()) << what;
    const int n = x.dim(0), classes = fq.dim(1);
    int same_engine = 0, same_sim = 0;
    double max_abs = 0, sum_abs = 0, scale = 0;
    for (int i = 0; i < n; ++i) {
      const float* a = fq.data() + i * classes;
      same_engine += argmax(a, classes) == argmax(eng.data() + i * classes, classes);
      same_sim += argmax(a, classes) == argmax(sim.data() + i * classes, classes);
      for (int k = 0; k < classes; ++k) {
        const double d = std::fabs(a[k] - eng[i * classes + k]);
        max_abs = std::max(max_abs, d);
        sum_abs += d;
        scale = std::max(scale, static_cast<double>(std::fabs(a[k])));
      }
    }
    EXPECT_GE(same_engine, n * 97 / 100) << what << ": arg-max differs on " << n - same_engine << " of " << n;
    EXPECT_GE(same_sim, n - 2) << what << ": arg-max differs from simulate() on " << n - same_sim << " of " << n;
    EXPECT_LT(sum_abs / (n * classes), 0.01 * scale) << what << " mean |fake - engine| " << sum_abs / (n * classes)
                                                      << ", largest logit " << scale;
    // Every op's u8 output: the fake-quant value of the layer that produces it -> code, against the
    // engine's trace. Later ops inherit the rare noise flips of earlier ones (one flipped input
    // moves every output of a linear layer for that image), so they get a looser bound than conv1,
    // whose codes may only differ by one step. A systematic difference (e.g. rounding the
    // fixed-point requantization once instead of twice) changes 3% or more of conv1's codes.
    const auto trace = e.trace(x);
    for (size_t oi = 0; oi + 1 < q.ops.size(); ++oi) {
      const QOp& op = q.ops[oi];
      if (op.kind == QOpKind::flatten) continue;
      const std::string layer = op.kind == QOpKind::maxpool ? op.name : op.name + ".fq";
      size_t li = 0;
      while (li < qn.net().size() && qn.net().name(li) != layer) ++li;
      ASSERT_LT(li, qn.net().size()) << what << ": no layer " << layer;
      const Tensor& fa = qn.net().activation(li + 1);
      ASSERT_EQ(static_cast<size_t>(fa.numel()), trace[oi].size()) << what << " op " << op.name;
      int64_t off = 0, worst = 0;
      for (int64_t i = 0; i < fa.numel(); ++i) {
        const int32_t code = static_cast<int32_t>(std::lround(fa[i] / op.out.scale)) + op.out.zero_point + 128;
        const int32_t d = std::abs(code - static_cast<int32_t>(trace[oi][size_t(i)]));
        off += d != 0;
        worst = std::max<int64_t>(worst, d);
      }
      if (oi == 0) {
        EXPECT_LE(worst, 1) << what << ": a conv1 code differs by " << worst;
        EXPECT_LE(off, fa.numel() / 10000) << what << ": " << off << " of " << fa.numel() << " conv1 codes differ";
      } else {
        EXPECT_LE(off, fa.numel() / 100) << what << ": " << off << " of " << fa.numel() << " codes of " << op.name
                                         << " (" << qop_kind_name(op.kind) << ") differ";
      }
    }
  }
  set_threads(0);
}

// The weights the network computes with are the QModel's codes times its scales, and the biases
// its int32 codes times s_w * s_in; ABC-Net weights are abc_bases()'s approximation quantized to
// 8 bits. Every weighted layer of the tiny model, per tensor and per channel, M = 1..5.
TEST(Qat, WeightsAndBiasesFollowTheEngineRules) {
  set_threads(3);  // prepare() splits each layer's channels unevenly across threads
  const Tensor calib = random_images(32, 5);
  for (int abc : {0, 1, 2, 3, 5}) {
    for (bool pc : {false, true}) {
      QatConfig cfg;
      cfg.wbits = abc ? 8 : 4, cfg.abits = 8, cfg.per_channel = pc, cfg.abc_bases = abc;
      Sequential m = tiny_model(11);
      std::vector<Tensor> fp32_w;  // conv1, conv2, fc1, fc2
      for (size_t i = 0; i < m.size(); ++i)
        for (Param& p : m.layer(i).params())
          if (p.name == "weight") fp32_w.push_back(*p.value);
      QatNetwork qn(std::move(m), calib, cfg);
      const QModel q = qn.to_qmodel();
      size_t wi = 0, li = 0;
      for (const QOp& op : q.ops) {
        if (!op.weighted()) continue;
        const Tensor& w = fp32_w[wi++];
        while (qn.net().name(li) != op.name) ++li;
        const Layer& layer = qn.net().layer(li);
        const Tensor& w_hat = dynamic_cast<const Conv2d*>(&layer) ? dynamic_cast<const Conv2d&>(layer).weight
                                                                  : dynamic_cast<const Linear&>(layer).weight;
        const Tensor& b_hat = dynamic_cast<const Conv2d*>(&layer) ? dynamic_cast<const Conv2d&>(layer).bias
                                                                  : dynamic_cast<const Linear&>(layer).bias;
        const std::string what = op.name + " abc " + std::to_string(abc) + (pc ? " per-channel" : " per-tensor");
        const int K = op.k(), qmax = abc ? 127 : 7;
        // What is quantized: the weights, or their ABC-Net approximation (per channel or tensor).
        std::vector<float> src(w.data(), w.data() + w.numel());
        if (abc && pc)
          for (int c = 0; c < op.out_ch; ++c) {
            AbcBases a = abc_bases(w.data() + c * K, K, abc);
            std::copy(a.approx.begin(), a.approx.end(), src.begin() + c * K);
          }
        if (abc && !pc) src = abc_bases(w.data(), w.numel(), abc).approx;
        float amax_all = 0;
        for (float v : src) amax_all = std::max(amax_all, std::fabs(v));
        for (int c = 0; c < op.out_ch; ++c) {
          float amax = 0;
          for (int j = 0; j < K; ++j) amax = std::max(amax, std::fabs(src[size_t(c * K + j)]));
          EXPECT_FLOAT_EQ(op.w_scale[size_t(c)], (pc ? amax : amax_all) / static_cast<float>(qmax)) << what << " channel " << c;
          for (int j = 0; j < K; ++j) {
            const int want = static_cast<int>(std::nearbyint(src[size_t(c * K + j)] / op.w_scale[size_t(c)]));
            ASSERT_EQ(op.weight[size_t(c * K + j)], std::clamp(want, -qmax, qmax)) << what << " [" << c << "," << j << "]";
            ASSERT_EQ(w_hat[c * K + j], op.w_scale[size_t(c)] * op.weight[size_t(c * K + j)]) << what;
          }
          const float sb = op.w_scale[size_t(c)] * op.in.scale;
          EXPECT_EQ(b_hat[c], static_cast<float>(op.bias[size_t(c)]) * sb) << what << " channel " << c;
        }
        EXPECT_EQ(op.abc_bases, abc) << what;
        EXPECT_EQ(op.wbits, abc ? 8 : 4) << what;
      }
      EXPECT_EQ(wi, fp32_w.size());
    }
  }
}

// Trains a 10-class LeNet-5 with biases from random initialization on a tiny stripe data set, under
// fake quantization only: every STE, low bit widths and ABC-Net must learn it.
TEST(Qat, TinyDataLearnsWithEverySte) {
  test::TempDir d;
  test::write_tiny_dataset(d.path, 200, false);
  Dataset tr = load_split(d.path, true), te = load_split(d.path, false);
  const Case cases[] = {{4, 4, false, Ste::Clipped, 0}, {4, 4, true, Ste::Lsq, 0}, {4, 8, false, Ste::Identity, 0},
                        {8, 8, true, Ste::Clipped, 2}};
  // Identity oscillates from lr 0.015 on (the gradient mismatch of seed 002); these rates learn the
  // data by epoch 4-5 with every kernel ISA (LOWBIT_ISA=ref|avx2|avx512 checked).
  const float lrs[] = {0.02f, 0.02f, 0.01f, 0.03f};
  for (int ci = 0; ci < 4; ++ci) {
    const Case& c = cases[ci];
    const std::string what = "w" + std::to_string(c.wbits) + "a" + std::to_string(c.abits) + " ste " + ste_name(c.ste) +
                             " abc " + std::to_string(c.abc);
    Sequential m = build_model("lenet5", true);
    m.init(1);
    QatConfig cfg;
    cfg.wbits = c.wbits, cfg.abits = c.abits, cfg.per_channel = c.per_channel, cfg.ste = c.ste, cfg.abc_bases = c.abc;
    // 13 steps an epoch: the ranges must follow the growing activations faster than at m = 0.99.
    cfg.epochs = 6, cfg.batch = 16, cfg.lr = lrs[ci], cfg.samples = 64, cfg.loss_every = 5, cfg.ema_momentum = 0.9f;
    int calls = 0;
    QatResult r = run_qat(std::move(m), tr, te, cfg, [&](const QatEpoch& e, QatNetwork&) { EXPECT_EQ(e.epoch, ++calls); });
    ASSERT_TRUE(r.has_model) << what;
    EXPECT_FALSE(r.diverged) << what;
    EXPECT_EQ(calls, 6) << what;
    EXPECT_LT(r.fp32_accuracy, 0.5) << what << ": the untrained model should not know the data";
    EXPECT_GE(r.accuracy, 0.9) << what << " engine accuracy";
    EXPECT_NEAR(r.accuracy, r.accuracy_fake_quant, 0.02) << what;
    EXPECT_LT(r.epochs.back().loss, 0.5 * r.epochs.front().loss) << what;
    EXPECT_EQ(r.loss_curve.size(), size_t((6 * 13 + 4) / 5)) << what;  // 13 steps an epoch, a point every 5 (last partial)
    nlohmann::json j = r.to_json();
    for (const char* k : {"accuracy", "accuracy_fake_quant", "loss_curve", "epochs", "fp32_accuracy"})
      EXPECT_TRUE(j.contains(k)) << k;
  }
}

TEST(Qat, NanStopsAndKeepsTheLastGoodEpoch) {
  test::TempDir d;
  test::write_tiny_dataset(d.path, 100, false);
  Dataset tr = load_split(d.path, true), te = load_split(d.path, false);
  Sequential m = build_model("lenet5", false);
  m.init(2);
  QatConfig cfg;
  cfg.wbits = 4, cfg.abits = 4, cfg.epochs = 3, cfg.batch = 20, cfg.lr = 0.01f, cfg.samples = 32;
  QatResult r = run_qat(std::move(m), tr, te, cfg, [](const QatEpoch& e, QatNetwork& qn) {
    if (e.epoch != 1) return;
    for (size_t i = 0; i < qn.net().size(); ++i)  // poison one master weight after epoch 1
      for (Param& p : qn.net().layer(i).params())
        if (p.name == "weight") {
          (*p.value)[0] = std::numeric_limits<float>::quiet_NaN();
          return;
        }
  });
  EXPECT_TRUE(r.diverged);
  EXPECT_NE(r.diverged_message.find("epoch 2"), std::string::npos) << r.diverged_message;
  EXPECT_NE(r.diverged_message.find("keeping the model of epoch 1"), std::string::npos) << r.diverged_message;
  ASSERT_TRUE(r.has_model);
  ASSERT_EQ(r.epochs.size(), 1u);
  EXPECT_EQ(r.accuracy_fake_quant, r.epochs[0].accuracy_fake_quant);
  for (const QOp& op : r.qmodel.ops)
    for (float s : op.w_scale) EXPECT_TRUE(std::isfinite(s));
}

TEST(Qat, ConfigErrorsNameTheFlag) {
  auto expect_flag = [](QatConfig c, const char* flag) {
    try {
      validate(c);
      ADD_FAILURE() << "no Error for " << flag;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(flag), std::string::npos) << e.what();
    }
  };
  QatConfig c;
  c.wbits = 1;
  expect_flag(c, "--wbits");
  c = {};
  c.wbits = 9;
  expect_flag(c, "--wbits");
  c = {};
  c.abits = 1;
  expect_flag(c, "--abits");
  c = {};
  c.abc_bases = 6;
  expect_flag(c, "--abc-bases");
  c = {};
  c.abc_bases = -1;
  expect_flag(c, "--abc-bases");
  c = {};
  c.abc_bases = 2, c.wbits = 4;
  expect_flag(c, "--wbits");
  c = {};
  c.lr = 0;
  expect_flag(c, "--lr");
  c = {};
  c.epochs = 0;
  expect_flag(c, "--epochs");
}

}  // namespace
}  // namespace lowbit
