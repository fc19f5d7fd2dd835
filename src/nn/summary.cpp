// torchinfo-style summary: per layer input/kernel/output shapes, parameters and multiply-adds;
// totals as torchinfo computes them (forward/backward size = outputs of layers with parameters,
// counted twice for their gradients; sizes in MB of 10^6 bytes).
#include <fmt/format.h>

#include "lowbit/nn.h"

namespace lowbit {

std::string with_commas(int64_t v) {
  std::string s = std::to_string(v < 0 ? -v : v), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return (v < 0 ? "-" : "") + out;
}

Summary summarize(Sequential& model) {
  Summary s;
  Shape shape = model.input_shape;
  shape.insert(shape.begin(), 1);
  s.input_mb = static_cast<double>(shape_numel(shape)) * 4 / 1e6;
  int64_t act_floats = 0;
  for (size_t i = 0; i < model.size(); ++i) {
    Layer& l = model.layer(i);
    SummaryRow r{model.name(i), l.type(), l.kernel_str(), shape, l.output_shape(shape), 0, 0};
    for (Param& p : l.params()) r.params += p.value->numel();
    r.macs = l.macs(Shape(shape.begin() + 1, shape.end()));
    if (r.params) act_floats += shape_numel(r.output);
    s.total_params += r.params;
    s.total_macs += r.macs;
    shape = r.output;
    s.rows.push_back(r);
  }
  s.activations_mb = static_cast<double>(act_floats) * 4 * 2 / 1e6;
  s.params_mb = static_cast<double>(s.total_params) * 4 / 1e6;
  s.total_mb = s.input_mb + s.activations_mb + s.params_mb;
  return s;
}

std::string format_summary(const Summary& s) {
  std::string out = fmt::format("{:<22}{:<18}{:<14}{:<18}{:>10}{:>12}\n", "Layer (type)", "Input Shape",
                                "Kernel Shape", "Output Shape", "Param #", "Mult-Adds");
  out += std::string(94, '=') + "\n";
  for (const SummaryRow& r : s.rows)
    out += fmt::format("{:<22}{:<18}{:<14}{:<18}{:>10}{:>12}\n", r.name + " (" + r.type + ")", shape_str(r.input),
                       r.kernel, shape_str(r.output), r.params ? with_commas(r.params) : "--",
                       r.macs ? with_commas(r.macs) : "--");
  out += std::string(94, '=') + "\n";
  out += fmt::format("Total params: {}\nTrainable params: {}\nNon-trainable params: 0\n", with_commas(s.total_params),
                     with_commas(s.total_params));
  out += fmt::format("Total mult-adds (M): {:.2f}\n", static_cast<double>(s.total_macs) / 1e6);
  out += std::string(94, '=') + "\n";
  out += fmt::format("Input size (MB): {:.2f}\nForward/backward pass size (MB): {:.2f}\nParams size (MB): {:.2f}\n"
                     "Estimated Total Size (MB): {:.2f}\n",
                     s.input_mb, s.activations_mb, s.params_mb, s.total_mb);
  return out;
}

nlohmann::json summary_json(const Summary& s) {
  nlohmann::json rows = nlohmann::json::array();
  for (const SummaryRow& r : s.rows)
    rows.push_back({{"name", r.name}, {"type", r.type}, {"kernel", r.kernel}, {"input_shape", r.input},
                    {"output_shape", r.output}, {"params", r.params}, {"mult_adds", r.macs}});
  return {{"layers", rows},           {"total_params", s.total_params}, {"total_mult_adds", s.total_macs},
          {"input_mb", s.input_mb},   {"forward_backward_mb", s.activations_mb},
          {"params_mb", s.params_mb}, {"total_mb", s.total_mb}};
}

}  // namespace lowbit
