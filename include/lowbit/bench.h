// Timing of whole-model inference for `lowbit bench` and `lowbit run`: throughput as the median
// over timed windows after a warm-up, latency as percentiles of single-sample calls. The caller's
// forward function runs once before timing and its output must be finite.
#pragma once

#include <functional>

#include "lowbit/core.h"

namespace lowbit {

struct InferenceTiming {
  double images_per_second = 0;
  double latency_us_p50 = 0, latency_us_p90 = 0;
};

using ForwardFn = std::function<void(const Tensor& x, Tensor& y)>;
// x: `batch` random samples of `sample` shape; windows of at least min_seconds; latency over
// `latency_calls` calls with one sample (0 = skip).
InferenceTiming time_inference(const ForwardFn& forward, const Shape& sample, int batch, int windows = 5,
                               double min_seconds = 0.2, int latency_calls = 3000);
// Median images/s of `step` (which processes images_per_step images).
double median_rate(const std::function<void()>& step, int images_per_step, int windows, double min_seconds);

}  // namespace lowbit
