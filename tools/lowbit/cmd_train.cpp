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
  std::string resume, checkpoint;
};

nlohmann::json train_config(const TrainOpts& o) {
  return {{"model", o.model},        {"bias", o.bias},         {"data", o.data},
          {"epochs", o.cfg.epochs},  {"batch", o.cfg.batch},   {"optimizer", o.cfg.optim.optimizer},
          {"lr", o.cfg.optim.lr},    {"momentum", o.cfg.optim.momentum},
          {"weight_decay", o.cfg.optim.weight_decay},          {"seed", o.cfg.seed},
          {"threads", threads()},    {"limit", o.limit}};
}

// --resume: every setting comes from the checkpoint (so the run continues exactly); only the
// output paths and verbosity come from this command line.
TrainOpts resumed(const TrainOpts& given) {
  nlohmann::json c = checkpoint_config(given.resume);
  TrainOpts o = given;
  try {
    o.model = c.at("model").get<std::string>();
    o.bias = c.at("bias").get<bool>();
    o.data = c.at("data").get<std::string>();
    o.cfg.epochs = c.at("epochs").get<int>();
    o.cfg.batch = c.at("batch").get<int>();
    o.cfg.optim.optimizer = c.at("optimizer").get<std::string>();
    o.cfg.optim.lr = c.at("lr").get<float>();
    o.cfg.optim.momentum = c.at("momentum").get<float>();
    o.cfg.optim.weight_decay = c.at("weight_decay").get<float>();
    o.cfg.seed = c.at("seed").get<uint64_t>();
    o.limit = c.at("limit").get<int>();
    if (c.at("threads").get<int>() != threads())
      std::fprintf(stderr, "lowbit: warning: the checkpoint was written with %d threads, this run uses %d: the final bits will differ from an uninterrupted run\n",
                   c.at("threads").get<int>(), threads());
  } catch (const nlohmann::json::exception& e) {
    throw Error(given.resume + ": malformed checkpoint config: " + e.what());
  }
  return o;
}

void run_train(const TrainOpts& given) {
  apply(given.common);
  const TrainOpts o = given.resume.empty() ? given : resumed(given);
  validate(o.cfg);
  check_output_path(o.out, "--out");
  const std::string ckpt = o.checkpoint.empty() ? o.out + ".ckpt" : o.checkpoint;
  check_output_path(ckpt, "--checkpoint");
  Sequential model = build_model(o.model, o.bias);
  model.init(o.cfg.seed);
  Optimizer opt(model, o.cfg.optim);
  Checkpoint state;
  state.config = train_config(o);
  if (!given.resume.empty()) {
    Checkpoint loaded = load_checkpoint(given.resume, model, opt);
    state.epochs_done = loaded.epochs_done;
    state.history = loaded.history;
    state.steps = loaded.steps;
    if (state.epochs_done >= o.cfg.epochs) throw Error(given.resume + ": all " + std::to_string(o.cfg.epochs) + " epochs are done already");
  }
  Dataset train_set = load_split(o.data, true, o.limit);
  Dataset test_set = load_split(o.data, false);
  TrainConfig cfg = o.cfg;
  cfg.progress = show_progress(o.common);
  if (!o.common.quiet)
    std::printf("training %s (%s params) on %d images, %d epochs, batch %d, %s lr %g, %d threads%s\n", o.model.c_str(),
                with_commas(model.num_params()).c_str(), train_set.size(), cfg.epochs, cfg.batch,
                cfg.optim.optimizer.c_str(), static_cast<double>(cfg.optim.lr), threads(),
                given.resume.empty() ? "" : (", resuming after epoch " + std::to_string(state.epochs_done)).c_str());
  train(model, opt, train_set, test_set, cfg, state.epochs_done, [&](const EpochStats& s) {
    if (!o.common.quiet) {
      std::printf("epoch %2d  loss %.4f  test accuracy %.2f%%  %.2f s  %.0f images/s\n", s.epoch, s.loss,
                  100 * s.test_accuracy, s.seconds, s.images_per_second);
      std::fflush(stdout);
    }
    state.history.push_back(s);
    state.epochs_done = s.epoch;
    state.steps = opt.steps;
    save_checkpoint(ckpt, model, opt, state);
    return true;
  });
  nlohmann::json epochs = nlohmann::json::array();
  double secs = 0;
  for (const EpochStats& s : state.history) {
    epochs.push_back({{"loss", s.loss}, {"test_accuracy", s.test_accuracy}, {"seconds", s.seconds}});
    secs += s.seconds;
  }
  const double acc = state.history.back().test_accuracy;
  const double ips = secs > 0 ? static_cast<double>(train_set.size()) * static_cast<double>(state.history.size()) / secs : 0.0;
  nlohmann::json info = state.config;
  info["test_accuracy"] = acc;
  save_model(o.out, model, info);
  if (!o.common.quiet) std::printf("wrote %s: test accuracy %.2f%%, %.0f training images/s\n", o.out.c_str(), 100 * acc, ips);
  write_json(o.common, {{"test_accuracy", acc}, {"train_images_per_second", ips}, {"threads", threads()},
                        {"epochs", epochs}, {"model", o.out}, {"checkpoint", ckpt}});
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
  t->add_option("--checkpoint", to.checkpoint, "Checkpoint written after every epoch (default: OUT.ckpt)");
  t->add_option("--resume", to.resume, "Continue from a checkpoint; its settings replace the training flags");
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
