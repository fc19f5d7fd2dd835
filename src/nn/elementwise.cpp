// Activations (ReLU, Sigmoid, Tanh), Flatten and Softmax: forward and backward side by side.
#include <algorithm>
#include <cmath>
#include <vector>

#include "lowbit/nn.h"

namespace lowbit {

std::string Activation::type() const {
  switch (kind) {
    case ActKind::relu: return "ReLU";
    case ActKind::sigmoid: return "Sigmoid";
    case ActKind::tanh: return "Tanh";
  }
  return "?";
}

// Per-sample size of a batch tensor.
static int64_t sample_size(const Tensor& t) { return t.dim(0) ? t.numel() / t.dim(0) : 0; }

void Activation::forward(const Tensor& in, Tensor& out, int n0, int n1) {
  const int64_t off = n0 * sample_size(in), n = (n1 - n0) * sample_size(in);
  const float* __restrict x = in.data() + off;
  float* __restrict y = out.data() + off;
  switch (kind) {
    case ActKind::relu:
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
      break;
    case ActKind::sigmoid:
      for (int64_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + std::exp(-x[i]));
      break;
    case ActKind::tanh:
      for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
      break;
  }
}

void Activation::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* din, int n0, int n1,
                          const std::vector<Tensor*>&) {
  if (!din) return;
  const int64_t off = n0 * sample_size(in), n = (n1 - n0) * sample_size(in);
  const float *__restrict x = in.data() + off, *__restrict y = out.data() + off, *__restrict dy = dout.data() + off;
  float* __restrict dx = din->data() + off;
  switch (kind) {
    case ActKind::relu:  // gradient passes where the input was > 0
      for (int64_t i = 0; i < n; ++i) {
        float g = dy[i];  // loaded unconditionally so the loop vectorizes into a blend
        dx[i] = x[i] > 0.0f ? g : 0.0f;
      }
      break;
    case ActKind::sigmoid:  // s' = s (1 - s)
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
      break;
    case ActKind::tanh:  // t' = 1 - t^2
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
      break;
  }
}

Shape Flatten::output_shape(const Shape& in) const {
  if (in.empty()) throw Error("Flatten needs a batch dimension");
  int64_t f = 1;
  for (size_t i = 1; i < in.size(); ++i) f *= in[i];
  return {in[0], static_cast<int>(f)};
}

void Flatten::forward(const Tensor& in, Tensor& out, int n0, int n1) {
  const int64_t s = sample_size(in);
  std::copy_n(in.data() + n0 * s, (n1 - n0) * s, out.data() + n0 * s);
}

void Flatten::backward(const Tensor&, const Tensor&, const Tensor& dout, Tensor* din, int n0, int n1,
                       const std::vector<Tensor*>&) {
  const int64_t s = sample_size(dout);
  if (din) std::copy_n(dout.data() + n0 * s, (n1 - n0) * s, din->data() + n0 * s);
}

void Softmax::forward(const Tensor& in, Tensor& out, int n0, int n1) {
  const int C = static_cast<int>(sample_size(in));
  for (int n = n0; n < n1; ++n) {
    const float* x = in.data() + int64_t{n} * C;
    float* y = out.data() + int64_t{n} * C;
    float mx = *std::max_element(x, x + C);
    double sum = 0.0;
    for (int c = 0; c < C; ++c) sum += (y[c] = std::exp(x[c] - mx));
    for (int c = 0; c < C; ++c) y[c] = static_cast<float>(y[c] / sum);
  }
}

void Softmax::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* din, int n0, int n1,
                       const std::vector<Tensor*>&) {
  if (!din) return;
  const int C = static_cast<int>(sample_size(in));
  for (int n = n0; n < n1; ++n) {  // dx = y * (dy - <dy, y>)
    const float *y = out.data() + int64_t{n} * C, *dy = dout.data() + int64_t{n} * C;
    float* dx = din->data() + int64_t{n} * C;
    double dot = 0.0;
    for (int c = 0; c < C; ++c) dot += double{dy[c]} * y[c];
    for (int c = 0; c < C; ++c) dx[c] = y[c] * (dy[c] - static_cast<float>(dot));
  }
}

double softmax_cross_entropy(const Tensor& logits, const uint8_t* labels, Tensor* dlogits) {
  const int N = logits.dim(0), C = logits.dim(1);
  double total = 0.0;
  std::vector<double> e(static_cast<size_t>(C));  // exp(z - max), reused for the probabilities
  for (int n = 0; n < N; ++n) {
    const float* z = logits.data() + int64_t{n} * C;
    float mx = *std::max_element(z, z + C);
    double sum = 0.0;
    for (int c = 0; c < C; ++c) sum += e[size_t(c)] = std::exp(double{z[c]} - mx);
    total += std::log(sum) + mx - z[labels[n]];
    if (dlogits) {
      float* d = dlogits->data() + int64_t{n} * C;
      for (int c = 0; c < C; ++c) d[c] = static_cast<float>((e[size_t(c)] / sum - (c == labels[n] ? 1.0 : 0.0)) / N);
    }
  }
  return total / N;
}

}  // namespace lowbit
