#include "lowbit/bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

namespace lowbit {

using Clock = std::chrono::steady_clock;
static double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median_rate(const std::function<void()>& step, int images_per_step, int windows, double min_seconds) {
  for (int i = 0; i < 3; ++i) step();  // warm-up: caches, page faults, thread start
  std::vector<double> rates;
  for (int w = 0; w < std::max(1, windows); ++w) {
    auto t0 = Clock::now();
    int steps = 0;
    do {
      step();
      ++steps;
    } while (since(t0) < min_seconds);
    rates.push_back(steps * static_cast<double>(images_per_step) / since(t0));
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

InferenceTiming time_inference(const ForwardFn& forward, const Shape& sample, int batch, int windows, double min_seconds,
                               int latency_calls) {
  if (batch <= 0) throw Error("--batch must be positive, got " + std::to_string(batch));
  Shape in = sample;
  in.insert(in.begin(), batch);
  Tensor x(in), one, y;
  Rng rng(1);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = rng.uniform(-1, 1);
  forward(x, y);
  for (int64_t i = 0; i < y.numel(); ++i)
    if (!std::isfinite(y[i])) throw Error("the forward pass gives a non-finite output");
  InferenceTiming t;
  t.images_per_second = median_rate([&] { forward(x, y); }, batch, windows, min_seconds);
  if (latency_calls > 0) {
    in[0] = 1;
    one.resize(in);
    std::copy_n(x.data(), one.numel(), one.data());
    std::vector<double> lat;
    for (int i = 0; i < latency_calls; ++i) {
      auto t0 = Clock::now();
      forward(one, y);
      lat.push_back(since(t0) * 1e6);
    }
    std::sort(lat.begin(), lat.end());
    t.latency_us_p50 = lat[lat.size() / 2];
    t.latency_us_p90 = lat[lat.size() * 9 / 10];
  }
  return t;
}

}  // namespace lowbit
