// Per-layer error analysis of a quantized model against its FP32 source: SQNR and cosine
// similarity of each layer's output, and the sensitivity of the accuracy to each layer alone.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lowbit/data.h"
#include "lowbit/engine.h"
#include "lowbit/nn.h"

namespace lowbit {

struct LayerError {
  std::string name;  // the op (= FP32 layer) name; the final op compares logits
  double sqnr_db;    // 10 log10(sum x^2 / sum (x - x_q)^2); +inf when equal
  double cosine;
};
// Runs `images` through fp32 and through the engine on q (q made from fp32 by quantize or qat) and
// compares every conv/linear/pool output, dequantized, with the FP32 activation it stands for.
std::vector<LayerError> layer_errors(Sequential& fp32, const QModel& q, const Tensor& images);

struct LayerSensitivity {
  std::string name;
  double accuracy;  // with only this layer quantized (weights, bias and output as in q)
};
// For every weighted op of q, the test accuracy of fp32 with only that layer replaced by its
// quantized version (weights and bias dequantized, output fake-quantized with q's parameters).
std::vector<LayerSensitivity> sensitivity(Sequential& fp32, const QModel& q, const Dataset& test);

nlohmann::json layer_errors_json(const std::vector<LayerError>& e);
nlohmann::json sensitivity_json(const std::vector<LayerSensitivity>& s);

}  // namespace lowbit
