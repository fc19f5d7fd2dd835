// lowbit train | eval | summary.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>

#include "cli.h"
#include "lowbit/data.h"
#include "lowbit/engine.h"
#include "lowbit/nn.h"
#include "lowbit/train.h"

namespace lowbit::cli {

namespace {

struct TrainOpts {
  Common common;
  std::string data = "fashion-mnist", model = "lenet5", out = "lenet5.safetensors";
  bool bias = false;
  TrainConfig cfg;
  int limit = 0;
};

void run_train(const TrainOpts& o) {
  apply(o.common);
  validate(o.cfg);
  check_output_path(o.out, "--out");
  Sequential model = build_model(o.model, o.bias);
  model.init(o.cfg.seed);
  Dataset train_set = load_split(o.data, true, o.limit);
  Dataset test_set = load_split(o.data, false);
  Optimizer opt(model, o.cfg.optim);
  TrainConfig cfg = o.cfg;
  cfg.progress = show_progress(o.common);
  if (!o.common.quiet)
    std::printf("training %s (%s params) on %d images, %d epochs, batch %d, %s lr %g, %d threads\n", o.model.c_str(),
                with_commas(model.num_params()).c_str(), train_set.size(), cfg.epochs, cfg.batch,
                cfg.optim.optimizer.c_str(), static_cast<double>(cfg.optim.lr), threads());
  auto history = train(model, opt, train_set, test_set, cfg, 0, [&](const EpochStats& s) {
    if (!o.common.quiet) {
      std::printf("epoch %2d  loss %.4f  test accuracy %.2f%%  %.2f s  %.0f images/s\n", s.epoch, s.loss,
                  100 * s.test_accuracy, s.seconds, s.images_per_second);
      std::fflush(stdout);
    }
    return true;
  });
  nlohmann::json epochs = nlohmann::json::array();
  double secs = 0;
  for (const EpochStats& s : history) {
    epochs.push_back({{"loss", s.loss}, {"test_accuracy", s.test_accuracy}, {"seconds", s.seconds}});
    secs += s.seconds;
  }
  const double ips = secs > 0 ? static_cast<double>(train_set.size()) * history.size() / secs : 0.0;
  nlohmann::json train_info = {{"data", o.data},      {"epochs", cfg.epochs}, {"batch", cfg.batch},
                               {"optimizer", cfg.optim.optimizer}, {"lr", cfg.optim.lr},
                               {"momentum", cfg.optim.momentum},   {"seed", cfg.seed},
                               {"test_accuracy", history.back().test_accuracy}};
  save_model(o.out, model, train_info);
  if (!o.common.quiet)
    std::printf("wrote %s: test accuracy %.2f%%, %.0f training images/s\n", o.out.c_str(),
                100 * history.back().test_accuracy, ips);
  write_json(o.common, {{"test_accuracy", history.back().test_accuracy}, {"train_images_per_second", ips},
                        {"threads", threads()}, {"epochs", epochs}, {"model", o.out}});
}

}  // namespace

void add_train_commands(CLI::App& app) {
  auto* t = app.add_subcommand("train", "Train an FP32 model with hand-written backprop");
  static TrainOpts to;
  add_common(t, to.common);
  t->add_option("--data", to.data, "Folder with the four IDX files (or 'fashion-mnist')")->capture_default_str();
  t->add_option("--model", to.model, "lenet5 | lenet5-classic")->capture_default_str();
  t->add_flag("--bias", to.bias, "Give conv and linear layers biases");
  t->add_option("--epochs", to.cfg.epochs, "Epochs")->capture_default_str();
  t->add_option("--batch", to.cfg.batch, "Mini-batch size")->capture_default_str();
  t->add_option("--optimizer", to.cfg.optim.optimizer, "sgd | adam")->capture_default_str();
  t->add_option("--lr", to.cfg.optim.lr, "Learning rate")->capture_default_str();
  t->add_option("--momentum", to.cfg.optim.momentum, "SGD momentum")->capture_default_str();
  t->add_option("--weight-decay", to.cfg.optim.weight_decay, "L2 weight decay")->capture_default_str();
  t->add_option("--seed", to.cfg.seed, "Random seed (initialization and batch order)")->capture_default_str();
  t->add_option("--limit", to.limit, "Use only the first N training images (0 = all)");
  t->add_option("--out,-o", to.out, "Model file to write")->capture_default_str();
  t->callback([] { run_train(to); });

  auto* e = app.add_subcommand("eval", "Accuracy of an FP32 model file on the test set");
  static struct {
    Common common;
    std::string model, data = "fashion-mnist";
  } eo;
  add_common(e, eo.common);
  e->add_option("model", eo.model, "Model file (FP32 or quantized)")->required();
  e->add_option("--data", eo.data, "Folder with the IDX files (or 'fashion-mnist')")->capture_default_str();
  e->callback([] {
    apply(eo.common);
    const std::string kind = model_kind(eo.model);
    double acc;
    Dataset test;
    std::string how = "fp32";
    if (kind == "quantized") {
      Engine engine(load_qmodel(eo.model));
      test = load_split(eo.data, false);
      acc = engine_accuracy(engine, test.images, test.labels);
      how = std::string("integer engine, ") + engine.isa();
    } else {
      Sequential m = load_model(eo.model);
      test = load_split(eo.data, false);
      acc = evaluate(m, test);
    }
    std::printf("%s: accuracy %.2f%% on %d test images (%s)\n", eo.model.c_str(), 100 * acc, test.size(), how.c_str());
    write_json(eo.common, {{"accuracy", acc}, {"images", test.size()}, {"kind", kind}});
  });

  auto* s = app.add_subcommand("summary", "Layer table: shapes, parameters, multiply-adds");
  static struct {
    Common common;
    std::string file, model;
    bool bias = false;
  } so;
  add_common(s, so.common, false);
  s->add_option("file", so.file, "Model file (or use --model)");
  s->add_option("--model", so.model, "Builder name: lenet5 | lenet5-classic");
  s->add_flag("--bias", so.bias, "With --model: the variant with biases");
  s->callback([] {
    apply(so.common);
    if (so.file.empty() == so.model.empty()) throw Error("summary: give a model file or --model NAME (not both)");
    Sequential m = so.file.empty() ? build_model(so.model, so.bias) : load_model(so.file);
    Summary sum = summarize(m);
    std::fputs(format_summary(sum).c_str(), stdout);
    write_json(so.common, summary_json(sum));
  });
}

}  // namespace lowbit::cli
