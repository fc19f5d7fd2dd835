// Training: a short run must learn; the same seed and threads give the same bytes; optimizers
// follow their update rules; bad settings are refused.
#include <gtest/gtest.h>

#include <cmath>

#include "lowbit/train.h"
#include "test_util.h"

namespace lowbit {
namespace {

TEST(Train, TinyDataLearns) {
  test::TempDir d;
  test::write_tiny_dataset(d.path, 200, false);
  Dataset tr = load_split(d.path, true), te = load_split(d.path, false);
  for (const char* opt : {"sgd", "adam"}) {
    Sequential m = build_model("lenet5", true);
    m.init(1);
    TrainConfig cfg;
    cfg.epochs = 6;
    cfg.batch = 16;
    cfg.optim.optimizer = opt;
    cfg.optim.lr = std::string(opt) == "adam" ? 1e-3f : 0.01f;
    Optimizer o(m, cfg.optim);
    auto h = train(m, o, tr, te, cfg);
    EXPECT_GE(h.back().test_accuracy, 0.95) << opt;
    EXPECT_LT(h.back().loss, h.front().loss) << opt;
  }
}

TEST(Train, FashionMnistSubsetReachesAccuracy) {
  if (!test::have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  Dataset tr = load_split("fashion-mnist", true, 6000), te = load_split("fashion-mnist", false, 2000);
  Sequential m = build_model("lenet5", false);
  m.init(1);
  TrainConfig cfg;
  cfg.epochs = 3;
  Optimizer o(m, cfg.optim);
  auto h = train(m, o, tr, te, cfg);
  EXPECT_GE(h.back().test_accuracy, 0.75);
}

TEST(Train, SameSeedSameBytes) {
  test::TempDir d;
  test::write_tiny_dataset(d.path, 64, false);
  Dataset tr = load_split(d.path, true), te = load_split(d.path, false);
  for (int threads : {1, 2}) {
    std::string first;
    for (int run = 0; run < 2; ++run) {
      set_threads(threads);
      Sequential m = build_model("lenet5", true);
      m.init(9);
      TrainConfig cfg;
      cfg.epochs = 2;
      cfg.batch = 8;
      Optimizer o(m, cfg.optim);
      train(m, o, tr, te, cfg);
      save_model(d.file("m"), m);
      std::string bytes = test::slurp(d.file("m"));
      if (run == 0) first = bytes;
      else EXPECT_EQ(first, bytes) << "threads " << threads;
    }
  }
  set_threads(0);
}

TEST(Optimizer, SgdAndAdamSteps) {
  Sequential m;
  m.add(std::make_unique<Linear>(1, 1, false), "fc");
  auto& l = static_cast<Linear&>(m.layer(0));
  l.weight[0] = 1.0f;
  OptimConfig sgd;
  sgd.lr = 0.1f;
  sgd.momentum = 0.5f;
  sgd.weight_decay = 0.01f;
  Optimizer o(m, sgd);
  l.dweight[0] = 2.0f;
  o.step();  // v = 2 + 0.01 = 2.01; w = 1 - 0.201
  EXPECT_NEAR(l.weight[0], 0.799f, 1e-6);
  o.step();  // v = 0.5 * 2.01 + 2 + 0.00799 = 3.01299
  EXPECT_NEAR(l.weight[0], 0.799f - 0.301299f, 1e-6);
  l.weight[0] = 1.0f;
  OptimConfig adam;
  adam.optimizer = "adam";
  adam.lr = 0.1f;
  Optimizer a(m, adam);
  l.dweight[0] = 3.0f;
  a.step();  // first bias-corrected step moves by lr * sign(g)
  EXPECT_NEAR(l.weight[0], 0.9f, 1e-6);
}

TEST(Train, RejectsBadSettingsAndDivergence) {
  TrainConfig cfg;
  cfg.epochs = 0;
  EXPECT_THROW(validate(cfg), Error);
  cfg.epochs = 1;
  cfg.batch = -1;
  EXPECT_THROW(validate(cfg), Error);
  cfg.batch = 1;
  cfg.optim.lr = 0;
  EXPECT_THROW(validate(cfg), Error);
  test::TempDir d;
  test::write_tiny_dataset(d.path, 20, false);
  Dataset tr = load_split(d.path, true);
  Sequential m = build_model("lenet5", false);
  m.init(1);
  TrainConfig big;
  big.epochs = 3;
  big.optim.lr = 1e9f;
  Optimizer o(m, big.optim);
  EXPECT_THROW(train(m, o, tr, tr, big), Error);
}

}  // namespace
}  // namespace lowbit

namespace lowbit {
namespace {

// Stopping after epoch 1, saving a checkpoint and resuming from it in a fresh model and optimizer
// gives the same bytes as one uninterrupted run.
TEST(Checkpoint, ResumeGivesSameBitsAsUninterrupted) {
  test::TempDir d;
  test::write_tiny_dataset(d.path, 96, false);
  Dataset tr = load_split(d.path, true), te = load_split(d.path, false);
  TrainConfig cfg;
  cfg.epochs = 3;
  cfg.batch = 16;
  for (const char* optname : {"sgd", "adam"}) {
    cfg.optim.optimizer = optname;
    cfg.optim.lr = std::string(optname) == "sgd" ? 0.01f : 1e-3f;
    Sequential full = build_model("lenet5", true);
    full.init(4);
    Optimizer fo(full, cfg.optim);
    train(full, fo, tr, te, cfg);
    save_model(d.file("full"), full);

    Sequential part = build_model("lenet5", true);
    part.init(4);
    Optimizer po(part, cfg.optim);
    Checkpoint c;
    train(part, po, tr, te, cfg, 0, [&](const EpochStats& s) {
      c.history.push_back(s);
      c.epochs_done = s.epoch;
      return false;  // interrupted after the first epoch
    });
    c.steps = po.steps;
    save_checkpoint(d.file("ckpt"), part, po, c);

    Sequential resumed = build_model("lenet5", true);
    resumed.init(99);  // overwritten by the checkpoint
    Optimizer ro(resumed, cfg.optim);
    Checkpoint back = load_checkpoint(d.file("ckpt"), resumed, ro);
    EXPECT_EQ(back.epochs_done, 1);
    train(resumed, ro, tr, te, cfg, back.epochs_done);
    save_model(d.file("resumed"), resumed);
    EXPECT_EQ(test::slurp(d.file("full")), test::slurp(d.file("resumed"))) << optname;
  }
}

TEST(Checkpoint, RejectsOtherFiles) {
  test::TempDir d;
  Sequential m = build_model("lenet5", false);
  m.init(1);
  save_model(d.file("model"), m);
  Optimizer o(m, OptimConfig{});
  EXPECT_THROW(load_checkpoint(d.file("model"), m, o), Error);
  EXPECT_THROW(load_checkpoint(d.file("missing"), m, o), Error);
}

}  // namespace
}  // namespace lowbit
