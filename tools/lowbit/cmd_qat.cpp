// lowbit qat: quantization-aware fine-tuning of an FP32 model, then conversion to an integer model
// the engine runs. A thin layer over run_qat() (qat.h): flags, printing, files.
#include <fmt/format.h>

#include <cstdio>

#include "cli.h"
#include "lowbit/data.h"
#include "lowbit/engine.h"
#include "lowbit/nn.h"
#include "lowbit/qat.h"
#include "lowbit/train.h"

namespace lowbit::cli {

namespace {

struct QatOpts {
  Common common;
  std::string model, data = "fashion-mnist", out = "qat.safetensors", ste = "clipped", calibrator = "max";
  QatConfig cfg;
  CLI::Option* abc_opt = nullptr;
  bool fp32_baseline = false;
  int limit = 0;
};

void run(QatOpts& o) {
  apply(o.common);
  // Flags first: nothing is read or written before they are all valid.
  o.cfg.ste = parse_ste(o.ste);
  try {
    o.cfg.calibrator = parse_calibrator(o.calibrator);
  } catch (const Error& e) {
    throw Error(std::string("--calibrator: ") + e.what());
  }
  if (o.abc_opt->count() > 0 && (o.cfg.abc_bases < 1 || o.cfg.abc_bases > 5))
    throw Error(fmt::format("--abc-bases: number of binary bases must be in 1..5, got {}", o.cfg.abc_bases));
  validate(o.cfg);
  if (o.limit < 0) throw Error(fmt::format("--limit: must be >= 0, got {}", o.limit));
  check_output_path(o.out, "--out");
  if (model_kind(o.model) != "fp32")
    throw Error(o.model + ": is a quantized model; qat fine-tunes an FP32 model (as written by lowbit train), "
                          "e.g. lowbit qat lenet5.safetensors --wbits 4 --abits 4 --out lenet5-w4a4.safetensors");
  Sequential fp32 = load_model(o.model);
  Dataset train_set = load_split(o.data, true, o.limit);
  Dataset test_set = load_split(o.data, false);
  QatConfig cfg = o.cfg;
  cfg.progress = show_progress(o.common);
  const bool quiet = o.common.quiet;
  if (!quiet) {
    std::printf("qat %s: w%da%d, ste %s%s%s, %d epochs, batch %d, sgd lr %g momentum %g, %d threads\n",
                o.model.c_str(), cfg.abc_bases > 0 ? 8 : cfg.wbits, cfg.abits, ste_name(cfg.ste),
                cfg.per_channel ? ", per-channel weights" : "",
                cfg.abc_bases > 0 ? fmt::format(", ABC-Net {} bases", cfg.abc_bases).c_str() : "", cfg.epochs,
                cfg.batch, static_cast<double>(cfg.lr), static_cast<double>(cfg.momentum), threads());
    std::fflush(stdout);
  }
  Sequential baseline_model;
  if (o.fp32_baseline) baseline_model = load_model(o.model);
  QatResult r = run_qat(std::move(fp32), train_set, test_set, cfg, [&](const QatEpoch& e, QatNetwork&) {
    if (!quiet) {
      std::printf("epoch %2d  loss %.4f  fake-quant test accuracy %.2f%%  %.2f s (cpu %.2f s)\n", e.epoch, e.loss,
                  100 * e.accuracy_fake_quant, e.seconds, e.cpu_seconds);
      std::fflush(stdout);
    }
  });
  nlohmann::json j = r.to_json();
  j["model"] = o.model;
  j["out"] = r.has_model ? nlohmann::json(o.out) : nlohmann::json(nullptr);
  j["config"] = {{"wbits", cfg.abc_bases > 0 ? 8 : cfg.wbits}, {"abits", cfg.abits}, {"ste", ste_name(cfg.ste)},
                 {"abc_bases", cfg.abc_bases}, {"per_channel", cfg.per_channel}, {"epochs", cfg.epochs},
                 {"batch", cfg.batch}, {"lr", cfg.lr}, {"momentum", cfg.momentum}, {"seed", cfg.seed},
                 {"samples", cfg.samples}, {"calibrator", calibrator_name(cfg.calibrator)},
                 {"ema_momentum", cfg.ema_momentum}, {"requant", cfg.requant}, {"threads", threads()}};
  if (r.has_model) save_qmodel(o.out, r.qmodel);
  if (!quiet) {
    std::printf("fp32 %.2f%%  ptq start %.2f%%\n", 100 * r.fp32_accuracy, 100 * r.ptq_accuracy);
    for (const std::string& n : r.notes) std::printf("note: %s\n", n.c_str());
    if (r.has_model)
      std::printf("engine test accuracy %.2f%%, fake-quant %.2f%% (difference %+.2f points); wrote %s\n",
                  100 * r.accuracy, 100 * r.accuracy_fake_quant, 100 * (r.accuracy_fake_quant - r.accuracy),
                  o.out.c_str());
  }
  if (o.fp32_baseline && !r.diverged) {
    std::vector<FinetuneEpoch> base = finetune_fp32(baseline_model, train_set, test_set, cfg);
    j["fp32_finetuned_accuracy"] = base.back().accuracy;
    j["fp32_finetuned_epochs"] = nlohmann::json::array();
    for (const FinetuneEpoch& e : base) {
      j["fp32_finetuned_epochs"].push_back({{"epoch", e.epoch}, {"loss", e.loss}, {"accuracy", e.accuracy},
                                            {"seconds", e.seconds}, {"cpu_seconds", e.cpu_seconds}});
      if (!quiet)
        std::printf("fp32 fine-tune epoch %2d  loss %.4f  test accuracy %.2f%%  %.2f s (cpu %.2f s)\n", e.epoch, e.loss,
                    100 * e.accuracy, e.seconds, e.cpu_seconds);
    }
    double qcpu = 0, fcpu = 0;
    for (const QatEpoch& e : r.epochs) qcpu += e.cpu_seconds;
    for (const FinetuneEpoch& e : base) fcpu += e.cpu_seconds;
    j["qat_epoch_cost_ratio_cpu"] = fcpu > 0 ? qcpu / fcpu : 0.0;
    if (!quiet)
      std::printf("fp32 fine-tuned with the same recipe: %.2f%% (qat engine %.2f%%); qat/fp32 epoch cpu time %.2f\n",
                  100 * base.back().accuracy, 100 * r.accuracy, fcpu > 0 ? qcpu / fcpu : 0.0);
  }
  write_json(o.common, j);
  if (r.diverged)
    throw Error(r.diverged_message + (r.has_model ? "; wrote " + o.out : "; nothing written to " + o.out));
}

}  // namespace

void add_qat_command(CLI::App& app) {
  auto* q = app.add_subcommand("qat", "Quantization-aware fine-tuning of an FP32 model; writes an integer model");
  static QatOpts o;
  add_common(q, o.common);
  q->add_option("model", o.model, "FP32 model file (as written by lowbit train)")->required();
  q->add_option("--data", o.data, "Folder with the IDX files (or 'fashion-mnist')")->capture_default_str();
  q->add_option("--wbits", o.cfg.wbits, "Weight bits, 2..8 (symmetric, narrow range)")->capture_default_str();
  q->add_option("--abits", o.cfg.abits, "Activation bits, 2..8 (affine), the network input included")
      ->capture_default_str();
  q->add_option("--ste", o.ste, "Straight-through estimator: identity | clipped | lsq (learned step sizes)")
      ->capture_default_str();
  o.abc_opt = q->add_option("--abc-bases", o.cfg.abc_bases,
                            "ABC-Net: train the weights as sums of M binary bases, M in 1..5 (stored as 8-bit)");
  q->add_flag("--per-channel", o.cfg.per_channel, "One weight scale (and ABC-Net basis set) per output channel");
  q->add_option("--epochs", o.cfg.epochs, "Fine-tuning epochs")->capture_default_str();
  q->add_option("--lr", o.cfg.lr, "SGD learning rate (momentum 0.9)")->capture_default_str();
  q->add_option("--momentum", o.cfg.momentum, "SGD momentum")->capture_default_str();
  q->add_option("--weight-decay", o.cfg.weight_decay, "L2 weight decay")->capture_default_str();
  q->add_option("--batch", o.cfg.batch, "Mini-batch size")->capture_default_str();
  q->add_option("--seed", o.cfg.seed, "Seed of the batch order")->capture_default_str();
  q->add_option("--samples", o.cfg.samples, "Calibration images for the initial ranges (first N training images)")
      ->capture_default_str();
  q->add_option("--calibrator", o.calibrator, "Initial activation ranges: max | 3sigma | percentile | kl | mse")
      ->capture_default_str();
  q->add_option("--ema-momentum", o.cfg.ema_momentum, "Moving average of the activation ranges (not with lsq)")
      ->capture_default_str();
  q->add_option("--requant", o.cfg.requant, "Requantization of the written model: fixedpoint | float | divide")
      ->capture_default_str();
  q->add_option("--limit", o.limit, "Use only the first N training images (0 = all)");
  q->add_flag("--fp32-baseline", o.fp32_baseline,
              "Also fine-tune the FP32 model with the same recipe and report its accuracy (fp32_finetuned_accuracy)");
  q->add_option("--out,-o", o.out, "Quantized model file to write")->capture_default_str();
  q->callback([] { run(o); });
}

}  // namespace lowbit::cli
