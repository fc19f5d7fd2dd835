// The training loop: shuffled mini-batches from a seeded RNG, loss, backward, optimizer step.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "lowbit/train.h"

namespace lowbit {

void validate(const TrainConfig& cfg) {
  if (cfg.epochs <= 0) throw Error("--epochs must be positive, got " + std::to_string(cfg.epochs));
  if (cfg.batch <= 0) throw Error("--batch must be positive, got " + std::to_string(cfg.batch));
  if (!(cfg.optim.lr > 0.0f) || !std::isfinite(cfg.optim.lr))
    throw Error("--lr must be a positive number, got " + std::to_string(cfg.optim.lr));
  if (cfg.optim.momentum < 0.0f || cfg.optim.momentum >= 1.0f)
    throw Error("--momentum must be in [0, 1), got " + std::to_string(cfg.optim.momentum));
  if (cfg.optim.weight_decay < 0.0f) throw Error("--weight-decay must be >= 0");
}

static void progress_bar(int epoch, int done, int total, double loss) {
  const int width = 30;
  int filled = total ? done * width / total : width;
  std::fprintf(stderr, "\repoch %2d [%.*s%*s] %3d%%  loss %.4f", epoch, filled,
               "##############################", width - filled, "", total ? done * 100 / total : 100, loss);
  std::fflush(stderr);
}

std::vector<EpochStats> train(Sequential& model, Optimizer& opt, const Dataset& train_set,
                              const Dataset& test_set, const TrainConfig& cfg, int start_epoch,
                              const EpochCallback& on_epoch) {
  validate(cfg);
  std::vector<EpochStats> history;
  std::vector<int> order(static_cast<size_t>(train_set.size()));
  Tensor x, dlogits;
  std::vector<uint8_t> y;
  const size_t end = model.logits_end();
  const bool bar = cfg.progress && isatty(STDERR_FILENO);
  for (int epoch = start_epoch; epoch < cfg.epochs; ++epoch) {
    std::iota(order.begin(), order.end(), 0);
    Rng rng(cfg.seed * 1000003u + static_cast<uint64_t>(epoch));
    rng.shuffle(order);
    auto t0 = std::chrono::steady_clock::now();
    double loss_sum = 0.0;
    int batches = 0;
    const int n = train_set.size();
    for (int b = 0; b < n; b += cfg.batch) {
      int e = std::min(n, b + cfg.batch);
      gather_batch(train_set, order, b, e, x, y);
      model.forward(x, Sequential::Keep::backward);
      const Tensor& logits = model.activation(end);
      dlogits.resize(logits.shape());
      double loss = softmax_cross_entropy(logits, y.data(), &dlogits);
      if (!std::isfinite(loss))
        throw Error("training diverged: loss is " + std::to_string(loss) + " at epoch " + std::to_string(epoch + 1) +
                    ", batch " + std::to_string(batches + 1) + " (try a smaller --lr)");
      model.backward(dlogits, end, /*accumulate=*/false);
      opt.step();
      loss_sum += loss;
      ++batches;
      if (bar && (batches % 20 == 0 || e == n)) progress_bar(epoch + 1, e, n, loss_sum / batches);
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (bar) std::fprintf(stderr, "\r\033[K");
    EpochStats s{epoch + 1, loss_sum / batches, evaluate(model, test_set), secs, n / secs};
    history.push_back(s);
    if (on_epoch && !on_epoch(s)) break;
  }
  return history;
}

double evaluate(Sequential& model, const Dataset& d, int batch) {
  std::vector<int> order(static_cast<size_t>(d.size()));
  std::iota(order.begin(), order.end(), 0);
  Tensor x;
  std::vector<uint8_t> y;
  int correct = 0;
  for (int b = 0; b < d.size(); b += batch) {
    int e = std::min(d.size(), b + batch);
    gather_batch(d, order, b, e, x, y);
    const Tensor& out = model.forward(x);
    const int C = out.dim(1);
    for (int i = 0; i < e - b; ++i) {
      const float* row = out.data() + int64_t{i} * C;
      int best = 0;
      for (int c = 1; c < C; ++c)
        if (row[c] > row[best]) best = c;
      correct += best == y[size_t(i)];
    }
  }
  return d.size() ? static_cast<double>(correct) / d.size() : 0.0;
}

}  // namespace lowbit
