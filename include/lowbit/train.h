// Optimizers (SGD with momentum and weight decay, Adam), the training loop and evaluation.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "lowbit/data.h"
#include "lowbit/nn.h"

namespace lowbit {

struct OptimConfig {
  std::string optimizer = "sgd";  // sgd | adam
  float lr = 0.01f;
  float momentum = 0.9f;          // sgd
  float weight_decay = 0.0f;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;  // adam
};

// Optimizer state over a model's parameters, PyTorch semantics:
// SGD: v = mu v + (g + wd w); w -= lr v.  Adam: bias-corrected first and second moments.
class Optimizer {
 public:
  Optimizer(Sequential& model, OptimConfig cfg);
  void step();
  const OptimConfig& config() const { return cfg_; }
  // State tensors (momentum / moments) for checkpoints; order matches the model's parameters.
  std::vector<Tensor*> state();
  int64_t steps = 0;

 private:
  OptimConfig cfg_;
  std::vector<Param> params_;
  std::vector<Tensor> m_, v_;
};

struct TrainConfig {
  int epochs = 10;
  int batch = 64;
  uint64_t seed = 1;
  OptimConfig optim;
  bool progress = false;  // a progress bar on stderr
};

struct EpochStats {
  int epoch;
  double loss;            // mean training loss over the epoch
  double test_accuracy;   // fraction in [0, 1]
  double seconds;         // training time of the epoch (evaluation excluded)
  double images_per_second;
};

// Called after every epoch; return false to stop. Hooks into checkpoints and reporting.
using EpochCallback = std::function<bool(const EpochStats&)>;

// Trains `model` for cfg.epochs (from `start_epoch`, for resumed runs). The order of batches comes
// from Rng(seed + epoch), so a resumed run replays the same batches. Throws Error when the loss
// becomes NaN or infinite, naming the epoch and batch; the caller then writes nothing.
std::vector<EpochStats> train(Sequential& model, Optimizer& opt, const Dataset& train_set,
                              const Dataset& test_set, const TrainConfig& cfg, int start_epoch = 0,
                              const EpochCallback& on_epoch = {});

// Fraction of correct arg-max predictions, in batches of `batch`.
double evaluate(Sequential& model, const Dataset& d, int batch = 256);

void validate(const TrainConfig& cfg);  // throws Error naming the bad flag

}  // namespace lowbit

namespace lowbit {
// Training checkpoints: the model, the optimizer state, the epochs done and their statistics,
// written atomically after every epoch so that `lowbit train --resume` continues to the same final
// bits as an uninterrupted run (batch order depends only on the seed and the epoch).
struct Checkpoint {
  int epochs_done = 0;
  int64_t steps = 0;
  nlohmann::json config;            // the run's settings; a resume must match them
  std::vector<EpochStats> history;
};
void save_checkpoint(const std::string& path, Sequential& model, Optimizer& opt, const Checkpoint& c);
// Loads the model and optimizer state into `model` and `opt` (built with the same architecture
// and optimizer) and returns the rest. Error naming the file when it does not fit.
Checkpoint load_checkpoint(const std::string& path, Sequential& model, Optimizer& opt);
// The model architecture stored in a checkpoint, to build the model before load_checkpoint.
nlohmann::json checkpoint_config(const std::string& path);
}  // namespace lowbit
