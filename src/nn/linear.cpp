// Linear: y[N, O] = x[N, I] * W^T + b (W^T built once while frozen, else dot products of rows).
// Backward: dW[O, I] += dy^T * x, dx[N, I] = dy * W.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/dispatch.h"
#include "lowbit/nn.h"
#include "nn/dense.h"
#include "nn/parallel.h"

namespace lowbit {

Linear::Linear(int in_features, int out_features, bool b) : in_f(in_features), out_f(out_features), has_bias(b) {
  if (in_f <= 0 || out_f <= 0) throw Error("Linear: feature counts must be positive");
  weight.resize({out_f, in_f});
  weight.zero();
  dweight.resize(weight.shape());
  dweight.zero();
  if (b) {
    bias.resize({out_f});
    bias.zero();
    dbias.resize({out_f});
    dbias.zero();
  }
}

Shape Linear::output_shape(const Shape& in) const {
  if (in.size() != 2 || in[1] != in_f)
    throw Error("Linear expects input (N, " + std::to_string(in_f) + "), got " + shape_str(in));
  return {in[0], out_f};
}

void FrozenWeights::build(const Tensor& w, int o, int k) {
  const size_t n = static_cast<size_t>(k) * o;
  // Inference calls forward again and again with the same weights: compare, transpose only when
  // they changed (a memcmp reads W once; the transpose's strided reads cost ten times more).
  if (wt.size() == n + kSgemmRowsSlack && std::memcmp(src.data(), w.data(), n * sizeof(float)) == 0) {
    valid = true;
    return;
  }
  src.resize(n);
  wt.resize(n + kSgemmRowsSlack);
  std::fill(wt.begin() + static_cast<ptrdiff_t>(n), wt.end(), 0.0f);
  rows.resize(static_cast<size_t>(k));
  // In 16 x 16 blocks: both the rows read and the rows written stay in L1. Threads take blocks
  // of rows of a large W: a training step rebuilds conv3's 48,000 weights while nothing else runs.
  constexpr int kB = 16;
  const int blocks = (o + kB - 1) / kB;
  run_threads(n >= 16384 ? std::min(threads(), blocks) : 1, [&](int th, int nth) {
    const Slice s = thread_slice(blocks, th, nth);
    const int i_end = std::min(o, s.end * kB);
    std::copy(w.data() + int64_t{s.begin} * kB * k, w.data() + int64_t{i_end} * k, src.begin() + int64_t{s.begin} * kB * k);
    for (int i0 = s.begin * kB; i0 < i_end; i0 += kB)
      for (int p0 = 0; p0 < k; p0 += kB)
        for (int i = i0; i < std::min(o, i0 + kB); ++i)
          for (int p = p0; p < std::min(k, p0 + kB); ++p)
            wt[size_t(p) * size_t(o) + size_t(i)] = src[size_t(i) * size_t(k) + size_t(p)];
  });
  for (int p = 0; p < k; ++p) rows[static_cast<size_t>(p)] = wt.data() + int64_t{p} * o;
  valid = true;
}

void FrozenWeights::apply(const float* x, int t, int o, int k, const float* bias, float* y) const {
  kernels().sgemm_rows({t, o, k, x, k, rows.data(), y, o, false});
  if (bias)
    for (int n = 0; n < t; ++n)
      for (int i = 0; i < o; ++i) y[int64_t{n} * o + i] += bias[i];
}

void Linear::forward(const Tensor& in, Tensor& out, int n0, int n1) {
  const int rows = n1 - n0;
  if (rows <= 0) return;
  float* y = out.data() + int64_t{n0} * out_f;
  if (frozen_.valid) {  // x read in place against W^T: nothing packed per call
    frozen_.apply(in.data() + int64_t{n0} * in_f, rows, out_f, in_f, has_bias ? bias.data() : nullptr, y);
    return;
  }
  // Not frozen (training: the weights change every step): dot products of x's rows with W's
  // rows, nothing transposed or packed.
  thread_local std::vector<const float*> xr, wr;
  xr.resize(static_cast<size_t>(rows));
  wr.resize(static_cast<size_t>(out_f));
  for (int n = 0; n < rows; ++n) xr[size_t(n)] = in.data() + int64_t{n0 + n} * in_f;
  for (int o = 0; o < out_f; ++o) wr[size_t(o)] = weight.data() + int64_t{o} * in_f;
  kernels().sgemm_nt({rows, out_f, in_f, xr.data(), wr.data(), y, out_f, false});
  if (has_bias)
    for (int n = 0; n < rows; ++n)
      for (int o = 0; o < out_f; ++o) y[int64_t{n} * out_f + o] += bias[o];
}

void Linear::backward(const Tensor& in, const Tensor& /*out*/, const Tensor& dout, Tensor* din, int n0, int n1,
                      const std::vector<Tensor*>& grads) {
  const int rows = n1 - n0;
  if (rows <= 0) return;
  const SgemmFn sgemm = kernels().sgemm;
  const float* dy = dout.data() + int64_t{n0} * out_f;
  const float* x = in.data() + int64_t{n0} * in_f;
  // dx[rows, I] = dy[rows, O] * W[O, I]
  if (din) sgemm({rows, in_f, out_f, dy, out_f, 1, weight.data(), in_f, 1, din->data() + int64_t{n0} * in_f, in_f, false});
  if (grads.empty()) return;
  // dW[O, I] += dy^T[O, rows] * x[rows, I]
  sgemm({out_f, in_f, rows, dy, 1, out_f, x, in_f, 1, grads[0]->data(), in_f, true});
  if (has_bias)
    for (int n = 0; n < rows; ++n)
      for (int o = 0; o < out_f; ++o) (*grads[1])[o] += dy[int64_t{n} * out_f + o];
}

void dense_grads_by_rows(const float* x, const float* dy, int n, int in, int out, int o0, int o1, float* dw, float* db,
                         bool accumulate) {
  if (o0 >= o1) return;
  kernels().sgemm({o1 - o0, in, n, dy + o0, 1, out, x, in, 1, dw + int64_t{o0} * in, in, accumulate});
  if (db)
    for (int o = o0; o < o1; ++o) {
      float sum = 0.0f;
      for (int i = 0; i < n; ++i) sum += dy[int64_t{i} * out + o];
      db[o] = accumulate ? db[o] + sum : sum;
    }
}

void Linear::grads_by_rows(const Tensor& in, const Tensor& dout, int o0, int o1, const std::vector<Tensor*>& grads,
                           bool accumulate) {
  dense_grads_by_rows(in.data(), dout.data(), in.dim(0), in_f, out_f, o0, o1, grads[0]->data(),
                      has_bias ? grads[1]->data() : nullptr, accumulate);
}

std::vector<Param> Linear::params() {
  std::vector<Param> p{{"weight", &weight, &dweight}};
  if (has_bias) p.push_back({"bias", &bias, &dbias});
  return p;
}

nlohmann::json Linear::spec() const {
  return {{"type", "Linear"}, {"in", in_f}, {"out", out_f}, {"bias", has_bias}};
}

void Linear::init(Rng& rng) {
  float bound = 1.0f / std::sqrt(static_cast<float>(in_f));
  for (int64_t i = 0; i < weight.numel(); ++i) weight[i] = rng.uniform(-bound, bound);
  if (has_bias)
    for (int64_t i = 0; i < bias.numel(); ++i) bias[i] = rng.uniform(-bound, bound);
}

}  // namespace lowbit
