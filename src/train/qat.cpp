// Quantization-aware training (qat.h): the fake-quantized training network, its weight and
// activation quantizers with their straight-through estimators, ABC-Net weights in training, the
// training loop, and the conversion to the engine's QModel.
// Not here: the elementwise fake quantization and STE kernels (fake_quant.cpp), calibration and the
// network plan (quantize_model in engine/quantizer.cpp: QAT starts from its result and keeps its op
// list), running the integer model (engine.cpp).
//
// How a step runs (qat.h shows the graph):
//   prepare()        weights: W_hat = s_w * clamp(round(W / s_w), -qmax, qmax) from the float master
//                    weights (ABC-Net: W first replaced by sum_i alpha_i B_i), s_w = max|W| / qmax per
//                    tensor or channel (LSQ: learned); bias b_hat = s_w s_in round(b / (s_w s_in));
//                    activations: QParams from the moving-average range (LSQ: learned step, fixed z),
//                    and each output channel's requantization shift, for the engine's rounding
//   forward          Sequential's tiled forward; the quantizer after a conv/linear applies its fused
//                    ReLU and records every sample's min/max; DQ rounds the logits to the
//                    accumulator grid
//   backward         Sequential's backward; a quantizer layer applies its STE to the activation
//                    gradient (and LSQ: accumulates its step's gradient); Conv2d/Linear compute
//                    dL/dW_hat, which finish_backward() turns into dL/dW (identity; LSQ: clip mask and
//                    the step's gradient)
//   optimizer step   on master weights, biases and LSQ steps
//   update_ranges()  range <- m * range + (1 - m) * this batch's min/max (PyTorch's
//                    MovingAverageMinMaxObserver). The batch is quantized with the range before its
//                    own update (Sequential runs the network tile by tile, so a layer never sees the
//                    whole batch before quantizing it): a one-step lag, negligible at m = 0.99.
#include "lowbit/qat.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>

#include <fmt/format.h>

#include "lowbit/quantizer.h"
#include "lowbit/train.h"
#include "nn/parallel.h"

namespace lowbit {

void validate(const QatConfig& cfg) {
  auto bits = [](int b, const char* flag) {
    if (b < 2 || b > 8) throw Error(fmt::format("{}: bit width must be in 2..8, got {}", flag, b));
  };
  bits(cfg.wbits, "--wbits");
  bits(cfg.abits, "--abits");
  if (cfg.abc_bases < 0 || cfg.abc_bases > 5)
    throw Error(fmt::format("--abc-bases: number of binary bases must be in 1..5, got {}", cfg.abc_bases));
  if (cfg.abc_bases > 0 && cfg.wbits != 8)
    throw Error(fmt::format("--wbits: with --abc-bases the summed bases are stored as 8-bit integers (a sum of M "
                            "binary bases with float alphas takes up to 2^M uneven values); use --wbits 8, got {}",
                            cfg.wbits));
  if (cfg.epochs < 1) throw Error(fmt::format("--epochs: must be >= 1, got {}", cfg.epochs));
  if (cfg.batch < 1) throw Error(fmt::format("--batch: must be >= 1, got {}", cfg.batch));
  if (!(cfg.lr > 0.0f) || !std::isfinite(cfg.lr)) throw Error(fmt::format("--lr: must be a positive number, got {}", cfg.lr));
  if (!(cfg.momentum >= 0.0f && cfg.momentum < 1.0f))
    throw Error(fmt::format("--momentum: must be in [0, 1), got {}", cfg.momentum));
  if (!(cfg.weight_decay >= 0.0f)) throw Error(fmt::format("--weight-decay: must be >= 0, got {}", cfg.weight_decay));
  if (cfg.samples < 1) throw Error(fmt::format("--samples: need at least 1 calibration image, got {}", cfg.samples));
  if (!(cfg.ema_momentum >= 0.0f && cfg.ema_momentum < 1.0f))
    throw Error(fmt::format("--ema-momentum: must be in [0, 1), got {}", cfg.ema_momentum));
  if (cfg.loss_every < 1) throw Error(fmt::format("--loss-every: must be >= 1, got {}", cfg.loss_every));
  if (cfg.requant != "fixedpoint" && cfg.requant != "float")
    throw Error("--requant: QAT emulates fixedpoint or float requantization in training, got '" + cfg.requant + "'");
}

namespace {

constexpr float kMinStep = 1e-8f;  // LSQ steps are kept above this after every update

bool finite(float v) { return std::isfinite(v); }

// Vectorizable scans (independent lanes; a NaN or Inf anywhere makes the lane sums non-finite).
constexpr int kLanes = 8;
bool all_finite(const float* x, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += x[i + l] * 0.0f;  // 0 for finite x, NaN otherwise
  for (; i < n; ++i) acc[0] += x[i] * 0.0f;
  float t = 0;
  for (int l = 0; l < kLanes; ++l) t += acc[l];
  return t == 0.0f;
}
float abs_max(const float* x, int64_t n) {
  float m[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) m[l] = std::max(m[l], std::fabs(x[i + l]));
  for (; i < n; ++i) m[0] = std::max(m[0], std::fabs(x[i]));
  float r = 0;
  for (int l = 0; l < kLanes; ++l) r = std::max(r, m[l]);
  return r;
}

// ---- activation quantizers ----

// One activation tensor's quantizer: the network input or a weighted op's (post-ReLU) output.
struct ActQuant {
  std::string name;
  int bits = 8;
  Ste ste = Ste::Clipped;
  float lo = 0, hi = 0;          // moving-average range (identity / clipped)
  Tensor step, dstep;            // LSQ: (1) the learned step size and its gradient
  int32_t z_fixed = 0;           // LSQ: zero point kept from calibration
  QParams qp;                    // what forward and conversion use
  int64_t per_sample = 0;        // elements per sample (LSQ gradient scale)
  bool observing = false;
  std::vector<float> smin, smax;  // per-sample min/max of the last training forward
  // The engine's rounding here (FakeQuantArgs::right): one right shift per output channel of the
  // producing layer, or none (-1: nearest-even) for the input. When the shifts differ, the
  // per-element thresholds of one sample (channel c covers elements [c * plane, (c + 1) * plane)).
  std::vector<int32_t> right;
  std::vector<float> thresholds;  // (per_sample) when !uniform
  int64_t plane = 1;
  bool uniform = true;  // every channel has the same shift
  bool relu = false;    // the producing layer's ReLU is fused here (FakeQuantArgs::relu)

  bool lsq() const { return ste == Ste::Lsq; }
  FakeQuantArgs args() const {
    FakeQuantArgs a = fake_quant_args(qp, right.empty() ? -1 : right[0], relu);
    if (!uniform) a.thresholds = thresholds.data();
    return a;
  }
  // Calls fn(offset, count, args) over samples [n0, n1) of a batch tensor: one run, or one per
  // sample when the thresholds are per element.
  template <class Fn>
  void runs(int n0, int n1, Fn fn) const {
    const FakeQuantArgs a = args();
    if (uniform) {
      fn(n0 * per_sample, (n1 - n0) * per_sample, a);
      return;
    }
    for (int n = n0; n < n1; ++n) fn(n * per_sample, per_sample, a);
  }
  void set_shifts(std::vector<int32_t> r) {
    right = std::move(r);
    uniform = std::all_of(right.begin(), right.end(), [&](int32_t v) { return v == right[0]; });
    if (uniform) return;
    thresholds.resize(static_cast<size_t>(per_sample));
    for (size_t c = 0; c < right.size(); ++c)
      std::fill_n(thresholds.begin() + static_cast<int64_t>(c) * plane, plane, fixedpoint_threshold(right[c]));
  }
  bool prepare() {
    if (lsq()) {
      if (!finite(step[0])) return false;
      step[0] = std::max(step[0], kMinStep);
      qp.scale = step[0];
      qp.zero_point = z_fixed;
      return true;
    }
    if (!finite(lo) || !finite(hi)) return false;
    qp = choose_qparams(std::min(lo, hi), std::max(lo, hi), bits, Scheme::Affine, false, name);
    return true;
  }
};

// Fake quantization of one activation tensor. `tied`: after average pooling, rounds the window
// averages as the engine does, on the grid of the quantizer before; observes nothing and passes
// gradients through.
class FakeQuantLayer : public Layer {
 public:
  FakeQuantLayer(ActQuant* q, bool tied) : q_(q), tied_(tied) {}
  std::string type() const override { return "FakeQuant"; }
  Shape output_shape(const Shape& in) const override { return in; }
  using Layer::backward;
  using Layer::forward;

  void forward(const Tensor& in, Tensor& out, int n0, int n1) override {
    const ActQuant& q = *q_;
    if (tied_) {  // after average pooling: the engine's rounding of the window average
      const int64_t per = in.dim(0) ? in.numel() / in.dim(0) : 0;
      fake_quant_avgpool_round(in.data() + n0 * per, (n1 - n0) * per, fake_quant_args(q.qp), out.data() + n0 * per);
      return;
    }
    if (q.observing) {  // also each sample's min/max, for the moving-average range
      for (int n = n0; n < n1; ++n) {
        float mn = 0, mx = 0;
        bool first = true;
        q.runs(n, n + 1, [&](int64_t off, int64_t cnt, const FakeQuantArgs& a) {
          float lo, hi;
          fake_quant_forward_minmax(in.data() + off, cnt, a, out.data() + off, &lo, &hi);
          mn = first || lo < mn ? lo : mn;
          mx = first || hi > mx ? hi : mx;
          first = false;
        });
        q_->smin[size_t(n)] = q.relu ? std::max(mn, 0.0f) : mn;  // the post-ReLU range
        q_->smax[size_t(n)] = q.relu ? std::max(mx, 0.0f) : mx;
      }
      return;
    }
    q.runs(n0, n1, [&](int64_t off, int64_t cnt, const FakeQuantArgs& a) {
      fake_quant_forward(in.data() + off, cnt, a, out.data() + off);
    });
  }

  void backward(const Tensor& in, const Tensor& /*out*/, const Tensor& dout, Tensor* din, int n0, int n1,
                const std::vector<Tensor*>& grads) override {
    const ActQuant& q = *q_;
    if (tied_) {
      const int64_t per = in.dim(0) ? in.numel() / in.dim(0) : 0;
      if (din)
        fake_quant_backward_identity(in.data() + n0 * per, dout.data() + n0 * per, (n1 - n0) * per, FakeQuantArgs{},
                                     din->data() + n0 * per);
      return;
    }
    if (q.ste == Ste::Identity) {
      if (din)
        q.runs(n0, n1, [&](int64_t off, int64_t cnt, const FakeQuantArgs& a) {
          fake_quant_backward_identity(in.data() + off, dout.data() + off, cnt, a, din->data() + off);
        });
      return;
    }
    if (q.ste == Ste::Clipped) {
      if (din)
        q.runs(n0, n1, [&](int64_t off, int64_t cnt, const FakeQuantArgs& a) {
          fake_quant_backward_clipped(in.data() + off, dout.data() + off, cnt, a, din->data() + off);
        });
      return;
    }
    // LSQ: the input quantizer has no din (nothing consumes it) but its step still learns.
    thread_local std::vector<float> scratch;
    double sum = 0;
    q.runs(n0, n1, [&](int64_t off, int64_t cnt, const FakeQuantArgs& a) {
      float* dx = din ? din->data() + off : nullptr;
      if (!dx) {
        scratch.resize(static_cast<size_t>(cnt));
        dx = scratch.data();
      }
      sum += fake_quant_backward_lsq(in.data() + off, dout.data() + off, cnt, a, dx);
    });
    (*grads[0])[0] += static_cast<float>(sum) * lsq_grad_scale(q.per_sample, q.qp.qmax());
  }

  std::vector<Param> params() override {
    if (tied_ || !q_->lsq()) return {};
    return {{"step", &q_->step, &q_->dstep}};
  }

 private:
  ActQuant* q_;
  bool tied_;
};

// ---- ABC-Net approximation, every step ----

// abc_bases(w, n, m).approx in O(n + m^3) instead of O(m^2 n): the shifts u_i increase with i, so
// the bases are nested: B_i(j) = +1 exactly for i >= t_j, where t_j in [0, m] counts the bases in
// which element j is -1. The elements fall into m + 1 bins; B^T B and B^T w follow from the bins'
// counts and sums, and element j's approximation is its bin's level sum_i alpha_i B_i(t_j). The
// mean, std and signs use abc_bases' exact expressions (hence the same bases); B^T w is summed in
// another order, so the result may differ from abc_bases' in the last bits (tests compare them).
void abc_approx(const float* w, int64_t n, int m, float* out) {
  double mean = 0;
  for (int64_t j = 0; j < n; ++j) mean += w[j];
  mean /= static_cast<double>(n);
  double var = 0;
  for (int64_t j = 0; j < n; ++j) var += (w[j] - mean) * (w[j] - mean);
  const double sd = std::sqrt(var / static_cast<double>(n));
  double u[5];
  for (int i = 0; i < m; ++i) u[i] = m == 1 ? 0.0 : -1.0 + i * 2.0 / (m - 1);
  int64_t count[6] = {};
  double sum[6] = {};
  std::vector<uint8_t> bin(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    int t = 0;
    for (int i = 0; i < m; ++i) t += (w[j] - mean) + u[i] * sd >= 0 ? 0 : 1;  // -1 in the first t bases
    bin[size_t(j)] = static_cast<uint8_t>(t);
    ++count[t];
    sum[t] += w[j];
  }
  auto b = [](int i, int t) { return i >= t ? 1.0 : -1.0; };
  // Normal equations G a = r, solved by abc_bases' Cholesky that skips dependent bases (alpha 0).
  double g[25], r[5] = {}, l[25] = {}, y[5] = {}, a[5] = {};
  bool active[5] = {};
  for (int i = 0; i < m; ++i) {
    for (int k = 0; k < m; ++k) {
      int64_t d = 0;
      for (int t = 0; t <= m; ++t) d += static_cast<int64_t>(b(i, t) * b(k, t)) * count[t];
      g[i * m + k] = static_cast<double>(d);
    }
    for (int t = 0; t <= m; ++t) r[i] += b(i, t) * sum[t];
  }
  for (int k = 0; k < m; ++k) {
    double d = g[k * m + k];
    for (int j = 0; j < k; ++j)
      if (active[j]) d -= l[k * m + j] * l[k * m + j];
    if (!(d > 1e-9 * g[k * m + k])) continue;
    active[k] = true;
    l[k * m + k] = std::sqrt(d);
    for (int i = k + 1; i < m; ++i) {
      double v = g[i * m + k];
      for (int j = 0; j < k; ++j)
        if (active[j]) v -= l[i * m + j] * l[k * m + j];
      l[i * m + k] = v / l[k * m + k];
    }
  }
  for (int i = 0; i < m; ++i) {
    if (!active[i]) continue;
    double v = r[i];
    for (int j = 0; j < i; ++j)
      if (active[j]) v -= l[i * m + j] * y[j];
    y[i] = v / l[i * m + i];
  }
  for (int i = m - 1; i >= 0; --i) {
    if (!active[i]) continue;
    double v = y[i];
    for (int j = i + 1; j < m; ++j)
      if (active[j]) v -= l[j * m + i] * a[j];
    a[i] = v / l[i * m + i];
  }
  float level[6];
  for (int t = 0; t <= m; ++t) {
    double v = 0;
    for (int i = 0; i < m; ++i) v += a[i] * b(i, t);
    level[t] = static_cast<float>(v);
  }
  for (int64_t j = 0; j < n; ++j) out[j] = level[bin[size_t(j)]];
}

// ---- weight quantizers ----

// Weights and bias of one Conv2d/Linear: float master copies (what the optimizer updates) and the
// fake-quantized values the layer computes with.
struct WeightQuant {
  std::string name;
  int bits = 8;
  bool per_channel = false;
  int abc = 0;
  bool lsq = false;          // learned weight steps (not with ABC-Net)
  int oc = 0;
  int64_t k = 0;             // weights per output channel
  Tensor master_w, master_b;  // (oc, ...) and (oc) or empty
  Tensor step, dstep;        // LSQ: (oc) per channel or (1)
  std::vector<float> approx;  // ABC-Net: sum_i alpha_i B_i of the master weights
  std::vector<float> amax;        // (oc): max|W| per channel (scan)
  std::vector<uint8_t> bad;       // (oc): a non-finite weight or bias (scan)
  std::vector<float> w_scale;     // (oc)
  std::vector<int32_t> bias_codes;
  const ActQuant* in = nullptr;   // the quantizer of this op's input (bias scale s_w * s_in)
  const Tensor* w_hat = nullptr;  // the layer's weight tensor, W_hat = s * q (set by prepare)

  int32_t qmax() const { return quant_max(bits); }

  // Fills w_hat (the layer's weight tensor) and b_hat in three steps, so that threads can share
  // the first and the last: scan() channels [c0, c1) (finite? max|W|; ABC-Net's approximation),
  // scales() (false when something is not finite), quantize() channels [c0, c1).
  void begin(bool has_bias) {
    amax.assign(static_cast<size_t>(oc), 0.0f);
    bad.assign(static_cast<size_t>(oc), 0);
    if (abc > 0) approx.resize(static_cast<size_t>(int64_t{oc} * k));
    if (has_bias) bias_codes.resize(static_cast<size_t>(oc));
  }
  void scan(int c0, int c1, bool has_bias) {
    const float* w = master_w.data();
    const bool abc_tensor = abc > 0 && !per_channel;
    // ABC-Net per tensor: one fit over the whole (finite) tensor, by whoever scans channel 0;
    // its max|W| comes in scales(), after every thread is done.
    if (abc_tensor && c0 == 0 && c1 > 0 && all_finite(w, int64_t{oc} * k)) abc_approx(w, int64_t{oc} * k, abc, approx.data());
    for (int c = c0; c < c1; ++c) {
      bad[size_t(c)] = !all_finite(w + c * k, k) || (has_bias && !finite(master_b[c]));
      if (bad[size_t(c)]) continue;
      if (abc > 0 && per_channel) abc_approx(w + c * k, k, abc, approx.data() + c * k);
      if (!lsq && !abc_tensor) amax[size_t(c)] = abs_max(src() + c * k, k);
    }
  }
  // Step sizes: learned (LSQ), or max|W| / qmax per tensor or channel as choose_qparams gives
  // them; an all-zero channel keeps the tensor's scale, as quantize_model does.
  bool scales() {
    if (std::any_of(bad.begin(), bad.end(), [](uint8_t b) { return b != 0; })) return false;
    w_scale.assign(static_cast<size_t>(oc), 1.0f);
    if (lsq) {
      for (int64_t i = 0; i < step.numel(); ++i) {
        if (!finite(step[i])) return false;
        step[i] = std::max(step[i], kMinStep);
      }
      for (int c = 0; c < oc; ++c) w_scale[size_t(c)] = step[per_channel ? c : 0];
      return true;
    }
    if (abc > 0 && !per_channel)  // the fit was not there yet when the channels were scanned
      for (int c = 0; c < oc; ++c) amax[size_t(c)] = abs_max(approx.data() + c * k, k);
    float amax_all = 0;
    for (int c = 0; c < oc; ++c) amax_all = std::max(amax_all, amax[size_t(c)]);
    const float tensor_scale = choose_qparams(-amax_all, amax_all, bits, Scheme::Symmetric, true, name).scale;
    for (int c = 0; c < oc; ++c) {
      const float m = amax[size_t(c)];
      w_scale[size_t(c)] = (per_channel && m > 0) ? choose_qparams(-m, m, bits, Scheme::Symmetric, true, name).scale
                                                  : tensor_scale;
    }
    return true;
  }
  void quantize(int c0, int c1, Tensor& what, Tensor* b_hat) {
    // W_hat = s * clamp(round(W / s), -qmax, qmax): quant_round's rule, vectorized.
    for (int c = c0; c < c1; ++c)
      fake_quant_forward(src() + c * k, k, FakeQuantArgs{w_scale[size_t(c)], 0, -qmax(), qmax()}, what.data() + c * k);
    w_hat = &what;
    // Bias: int32 in units of s_w * s_in, kept within what the engine's int32 accumulator allows
    // beside the largest possible sum of products (quantize_model's bound).
    if (!b_hat) return;
    const double limit = 2147483647.0 - 255.0 * 255.0 * static_cast<double>(k);
    const float s_in = in->qp.scale;
    for (int c = c0; c < c1; ++c) {
      const float sb = w_scale[size_t(c)] * s_in;
      double v = std::nearbyint(static_cast<double>(master_b[c]) / static_cast<double>(sb));
      v = std::clamp(v, -limit, limit);
      bias_codes[size_t(c)] = static_cast<int32_t>(v);
      (*b_hat)[c] = static_cast<float>(v) * sb;
    }
  }
  const float* src() const { return abc > 0 ? approx.data() : master_w.data(); }  // what is quantized

  // The integer weights: W_hat / s is q up to a rounding error far below 1/2.
  std::vector<int8_t> codes() const {
    std::vector<int8_t> q(static_cast<size_t>(int64_t{oc} * k));
    for (int c = 0; c < oc; ++c)
      for (int64_t j = 0; j < k; ++j)
        q[size_t(c * k + j)] = static_cast<int8_t>(std::nearbyint((*w_hat)[c * k + j] / w_scale[size_t(c)]));
    return q;
  }

  // dw holds dL/dW_hat (summed over the batch); turns it into dL/dW. Identity for max-based
  // steps (nothing is clamped: |W| <= max|W| = s * qmax) and for ABC-Net; LSQ masks the clamped
  // weights and sets each step's gradient.
  void finish_backward(Tensor& dw) {
    if (!lsq) return;
    dstep.zero();
    const float g = lsq_grad_scale(per_channel ? k : int64_t{oc} * k, qmax());
    for (int c = 0; c < oc; ++c) {
      const FakeQuantArgs a{w_scale[size_t(c)], 0, -qmax(), qmax()};
      const double sum = fake_quant_backward_lsq(master_w.data() + c * k, dw.data() + c * k, k, a, dw.data() + c * k);
      dstep[per_channel ? c : 0] += static_cast<float>(sum) * g;
    }
  }

  std::vector<Param> params(Tensor& dweight, Tensor& dbias, bool has_bias) {
    std::vector<Param> p{{"weight", &master_w, &dweight}};
    if (has_bias) p.push_back({"bias", &master_b, &dbias});
    if (lsq) p.push_back({"step", &step, &dstep});
    return p;
  }
};

// Conv2d/Linear computing with fake-quantized weights (their `weight`/`bias` members hold W_hat
// and b_hat, so the inherited forward and backward run unchanged: backward gives dL/dW_hat and
// dL/dx through W_hat, the straight-through weight gradient); the optimizer sees the masters.
class QatConv2d : public Conv2d {
 public:
  explicit QatConv2d(const Conv2d& c) : Conv2d(c.in_ch, c.out_ch, c.kernel, c.stride, c.pad, c.has_bias) {
    wq.master_w = c.weight;
    if (c.has_bias) wq.master_b = c.bias;
  }
  std::vector<Param> params() override { return wq.params(dweight, dbias, has_bias); }
  WeightQuant wq;
};

class QatLinear : public Linear {
 public:
  explicit QatLinear(const Linear& l) : Linear(l.in_f, l.out_f, l.has_bias) {
    wq.master_w = l.weight;
    if (l.has_bias) wq.master_b = l.bias;
  }
  std::vector<Param> params() override { return wq.params(dweight, dbias, has_bias); }
  WeightQuant wq;
};

// The dequantize step at the output: the engine's logits are its int32 accumulators times
// s_w[c] * s_in, so the last layer's float output is rounded to that grid (forward only; int32
// never clamps, so the backward is the identity). Without it, float noise would break the exact
// ties between classes that low-bit integer accumulators often have, and the fake-quant arg-max
// would differ from the engine's (both take the first maximum).
class OutputDequantLayer : public Layer {
 public:
  explicit OutputDequantLayer(const WeightQuant* wq) : wq_(wq) {}
  std::string type() const override { return "OutputDequant"; }
  Shape output_shape(const Shape& in) const override { return in; }
  using Layer::backward;
  using Layer::forward;
  void forward(const Tensor& in, Tensor& out, int n0, int n1) override {
    const int64_t per = in.dim(0) ? in.numel() / in.dim(0) : 0, plane = per / wq_->oc;
    const float s_in = wq_->in->qp.scale;
    for (int n = n0; n < n1; ++n)
      for (int c = 0; c < wq_->oc; ++c) {
        const float sc = wq_->w_scale[size_t(c)] * s_in;
        const int64_t off = n * per + c * plane;
        for (int64_t p = 0; p < plane; ++p) out[off + p] = std::nearbyint(in[off + p] / sc) * sc;
      }
  }
  void backward(const Tensor& in, const Tensor& /*out*/, const Tensor& dout, Tensor* din, int n0, int n1,
                const std::vector<Tensor*>& /*grads*/) override {
    const int64_t per = in.dim(0) ? in.numel() / in.dim(0) : 0;
    if (din) std::copy(dout.data() + n0 * per, dout.data() + n1 * per, din->data() + n0 * per);
  }

 private:
  const WeightQuant* wq_;
};

// Range [lo, hi] that affine parameters qp represent: s * (qmin - z) .. s * (qmax - z).
void range_of(const QParams& qp, float& lo, float& hi) {
  lo = qp.scale * static_cast<float>(qp.qmin() - qp.zero_point);
  hi = qp.scale * static_cast<float>(qp.qmax() - qp.zero_point);
}

}  // namespace

// ---- the network ----

struct QatNetwork::Impl {
  QatConfig cfg;
  QModel init;
  std::vector<std::string> init_notes;
  Sequential net;
  std::vector<std::unique_ptr<ActQuant>> acts;  // 0 = the network input
  struct Weighted {
    size_t op = 0;            // index into init.ops
    Layer* layer = nullptr;   // QatConv2d or QatLinear
    WeightQuant* wq = nullptr;
    ActQuant* out = nullptr;  // null for the last weighted op
  };
  std::vector<Weighted> weighted;

  Tensor* weight_of(Layer* l) {
    if (auto* c = dynamic_cast<QatConv2d*>(l)) return &c->weight;
    return &dynamic_cast<QatLinear*>(l)->weight;
  }
  Tensor* bias_of(Layer* l) {
    if (auto* c = dynamic_cast<QatConv2d*>(l)) return c->has_bias ? &c->bias : nullptr;
    auto* f = dynamic_cast<QatLinear*>(l);
    return f->has_bias ? &f->bias : nullptr;
  }
  Tensor* dweight_of(Layer* l) {
    if (auto* c = dynamic_cast<QatConv2d*>(l)) return &c->dweight;
    return &dynamic_cast<QatLinear*>(l)->dweight;
  }

  ActQuant* new_act(const std::string& name, const QParams& qp) {
    auto a = std::make_unique<ActQuant>();
    a->name = name;
    a->bits = cfg.abits;
    a->ste = cfg.ste;
    range_of(qp, a->lo, a->hi);
    a->qp = qp;
    a->step.resize({1});
    a->step[0] = qp.scale;
    a->dstep.resize({1});
    a->z_fixed = qp.zero_point;
    acts.push_back(std::move(a));
    return acts.back().get();
  }
};

QatNetwork::QatNetwork(Sequential fp32, const Tensor& calib_images, const QatConfig& cfg) : impl_(new Impl) {
  Impl& im = *impl_;
  try {
    validate(cfg);
    im.cfg = cfg;
    PtqConfig pc;
    pc.calibrator = cfg.calibrator;
    pc.input_calibrator = Calibrator::Max;
    pc.wbits = cfg.wbits;
    pc.abits = cfg.abits;
    pc.per_channel = cfg.per_channel;
    pc.act_scheme = Scheme::Affine;
    pc.rounding = Rounding::Nearest;
    pc.requant = cfg.requant;
    pc.abc_bases = cfg.abc_bases;
    pc.samples = calib_images.rank() ? calib_images.dim(0) : 0;
    pc.bias_correction = "off";  // only the ranges and the op plan are used here
    im.init = quantize_model(fp32, calib_images, pc, &im.init_notes);

    // Rebuild the network from the op plan, op names = layer names.
    std::map<std::string, size_t> op_of;
    for (size_t i = 0; i < im.init.ops.size(); ++i) op_of[im.init.ops[i].name] = i;
    size_t last_weighted = 0;
    for (size_t i = 0; i < im.init.ops.size(); ++i)
      if (im.init.ops[i].weighted()) last_weighted = i;

    Sequential& net = im.net;
    net.architecture = fp32.architecture;
    net.input_shape = fp32.input_shape;
    net.tile = fp32.tile;
    ActQuant* cur = im.new_act("input", im.init.input);
    cur->per_sample = shape_numel(fp32.input_shape);
    net.add(std::make_unique<FakeQuantLayer>(cur, false), "input.fq");
    Shape shape = fp32.input_shape;
    shape.insert(shape.begin(), 1);
    for (size_t i = 0; i < fp32.size(); ++i) {
      Layer& l = fp32.layer(i);
      const std::string& name = fp32.name(i);
      shape = l.output_shape(shape);
      auto it = op_of.find(name);
      // Not an op: a ReLU fused into its weighted op (the quantizer after it applies it, as the
      // engine's clamp does), or the dropped trailing Softmax.
      if (it == op_of.end()) continue;
      const QOp& op = im.init.ops[it->second];
      if (op.weighted()) {
        std::unique_ptr<Layer> ql;
        WeightQuant* wq;
        if (const auto* c = dynamic_cast<const Conv2d*>(&l)) {
          auto q = std::make_unique<QatConv2d>(*c);
          wq = &q->wq;
          ql = std::move(q);
        } else {
          auto q = std::make_unique<QatLinear>(dynamic_cast<const Linear&>(l));
          wq = &q->wq;
          ql = std::move(q);
        }
        wq->name = name + ".weight";
        wq->bits = op.wbits;
        wq->per_channel = cfg.per_channel;
        wq->abc = cfg.abc_bases;
        wq->lsq = cfg.ste == Ste::Lsq && cfg.abc_bases == 0;
        wq->oc = op.out_ch;
        wq->k = op.k();
        wq->in = cur;
        if (wq->lsq) {
          const int64_t ns = cfg.per_channel ? op.out_ch : 1;
          wq->step.resize({static_cast<int>(ns)});
          wq->dstep.resize({static_cast<int>(ns)});
          for (int64_t c = 0; c < ns; ++c) wq->step[c] = op.w_scale[size_t(c)];
        }
        Impl::Weighted w;
        w.op = it->second;
        w.layer = ql.get();
        w.wq = wq;
        net.add(std::move(ql), name);
        if (it->second != last_weighted) {
          w.out = im.new_act(name, op.out);
          Shape per(shape.begin() + 1, shape.end());
          w.out->per_sample = shape_numel(per);
          w.out->plane = w.out->per_sample / op.out_ch;  // conv: OH * OW; linear: 1
          w.out->relu = op.relu;
          cur = w.out;
          net.add(std::make_unique<FakeQuantLayer>(w.out, false), name + ".fq");
        } else {
          net.add(std::make_unique<OutputDequantLayer>(wq), name + ".dequant");
        }
        im.weighted.push_back(w);
      } else {
        net.add(make_layer(l.spec()), name);
        if (op.kind == QOpKind::avgpool) net.add(std::make_unique<FakeQuantLayer>(cur, true), name + ".fq");
      }
    }
    if (!prepare()) throw Error("the FP32 model has non-finite weights");
  } catch (...) {
    delete impl_;
    throw;
  }
}

QatNetwork::~QatNetwork() { delete impl_; }

Sequential& QatNetwork::net() { return impl_->net; }
const QModel& QatNetwork::initial() const { return impl_->init; }

bool QatNetwork::prepare() {
  Impl& im = *impl_;
  for (auto& a : im.acts)
    if (!a->prepare()) return false;
  // Every step: threads take slices of each layer's output channels (conv3 holds 48,000 of
  // LeNet's 61,470 weights), so each writes half of W_hat rather than one thread all of it.
  for (auto& w : im.weighted) w.wq->begin(im.bias_of(w.layer) != nullptr);
  run_threads(threads(), [&](int th, int nth) {
    for (auto& w : im.weighted) {
      const Slice s = thread_slice(w.wq->oc, th, nth);
      w.wq->scan(s.begin, s.end, im.bias_of(w.layer) != nullptr);
    }
  });
  for (auto& w : im.weighted)
    if (!w.wq->scales()) return false;
  run_threads(threads(), [&](int th, int nth) {
    for (auto& w : im.weighted) {
      const Slice s = thread_slice(w.wq->oc, th, nth);
      w.wq->quantize(s.begin, s.end, *im.weight_of(w.layer), im.bias_of(w.layer));
    }
  });
  if (im.cfg.requant != "fixedpoint") return true;
  // The right shift of every output channel's multiplier, as compute_requant derives it.
  for (auto& w : im.weighted) {
    if (!w.out) continue;
    std::vector<int32_t> right(static_cast<size_t>(w.wq->oc));
    for (int c = 0; c < w.wq->oc; ++c) {
      double m = double{w.wq->w_scale[size_t(c)]} * w.wq->in->qp.scale / w.out->qp.scale;
      if (!(m > 0) || !std::isfinite(m)) return false;
      m = std::clamp(m, std::ldexp(1.0, -31), std::ldexp(1.0, 30) * 0.999);
      right[size_t(c)] = std::max(-quantize_multiplier(m).shift, 0);
    }
    w.out->set_shifts(std::move(right));
  }
  return true;
}

const Tensor& QatNetwork::forward_train(const Tensor& x) {
  Impl& im = *impl_;
  const int n = x.dim(0);
  for (auto& a : im.acts)
    if (!a->lsq()) {
      a->observing = true;
      a->smin.assign(static_cast<size_t>(n), 0.0f);
      a->smax.assign(static_cast<size_t>(n), 0.0f);
    }
  const Tensor& out = im.net.forward(x, Sequential::Keep::backward);
  for (auto& a : im.acts) a->observing = false;
  return out;
}

void QatNetwork::finish_backward() {
  for (auto& w : impl_->weighted) w.wq->finish_backward(*impl_->dweight_of(w.layer));
}

void QatNetwork::update_ranges() {
  const float m = impl_->cfg.ema_momentum;
  for (auto& a : impl_->acts) {
    if (a->lsq() || a->smin.empty()) continue;
    float mn = a->smin[0], mx = a->smax[0];
    for (size_t i = 1; i < a->smin.size(); ++i) {
      mn = std::min(mn, a->smin[i]);
      mx = std::max(mx, a->smax[i]);
    }
    a->lo = m * a->lo + (1.0f - m) * mn;
    a->hi = m * a->hi + (1.0f - m) * mx;
    a->smin.clear();
    a->smax.clear();
  }
}

QModel QatNetwork::to_qmodel(std::vector<std::string>* notes) const {
  const Impl& im = *impl_;
  QModel q = im.init;
  q.input = im.acts[0]->qp;
  std::vector<std::string> nn;
  QParams cur = q.input;
  size_t wi = 0;
  for (size_t i = 0; i < q.ops.size(); ++i) {
    QOp& op = q.ops[i];
    op.in = cur;
    if (!op.weighted()) {
      op.out = cur;
      continue;
    }
    const Impl::Weighted& w = im.weighted[wi++];
    const WeightQuant& wq = *w.wq;
    op.weight = wq.codes();
    op.w_scale = wq.w_scale;
    op.bias = wq.bias_codes;  // empty without bias
    op.wbits = wq.bits;
    op.per_channel = wq.per_channel;
    op.abc_bases = wq.abc;
    if (w.out) {
      op.out = w.out->qp;
      compute_requant(op, &nn);
    }
    cur = op.out;
  }
  const QatConfig& c = im.cfg;
  if (c.abc_bases > 0)
    nn.push_back(fmt::format("ABC-Net: weights trained as sums of {} binary bases ({}) and stored as 8-bit integers: "
                             "a sum of M binary bases with float alphas takes up to 2^M unevenly spaced values, "
                             "more than M bits can hold exactly",
                             c.abc_bases, c.per_channel ? "per output channel" : "per tensor"));
  q.info = {{"source_architecture", q.architecture},
            {"method", "qat"},
            {"ste", ste_name(c.ste)},
            {"wbits", c.abc_bases > 0 ? 8 : c.wbits},
            {"abits", c.abits},
            {"per_channel", c.per_channel},
            {"abc_bases", c.abc_bases},
            {"weight_scheme", "symmetric narrow"},
            {"act_scheme", "affine"},
            {"rounding", "nearest"},
            {"requant", c.requant},
            {"initial_calibrator", calibrator_name(c.calibrator)},
            {"ranges", c.ste == Ste::Lsq ? "learned (LSQ)" : "moving average of batch min/max"},
            {"ema_momentum", c.ema_momentum},
            {"notes", nn}};
  if (notes) notes->insert(notes->end(), nn.begin(), nn.end());
  return q;
}

// ---- training ----

namespace {

using Clock = std::chrono::steady_clock;

std::vector<int> epoch_order(int n, uint64_t seed, int epoch) {
  std::vector<int> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  Rng rng(seed * 1000003u + static_cast<uint64_t>(epoch));  // train()'s order, so baselines match
  rng.shuffle(order);
  return order;
}

Tensor first_images(const Dataset& d, int n) {
  n = std::min(n, d.size());
  Shape s = d.images.shape();
  s[0] = n;
  Tensor t(s);
  std::copy_n(d.images.data(), t.numel(), t.data());
  return t;
}

double cpu_seconds() {  // all threads of the process
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// One epoch of mini-batch SGD, the same loop for the QAT network and the FP32 baseline so that
// their costs compare: forward(x) -> logits, softmax cross-entropy, backward (replacing the gradients),
// after_backward(), optimizer step, after_step() (false: stop, something became non-finite).
struct EpochHooks {
  std::function<const Tensor&(const Tensor&)> forward;
  std::function<void()> after_backward;
  std::function<bool()> after_step;
  std::function<void(double)> on_loss;  // every step's loss
};
struct EpochOutcome {
  double loss_sum = 0;
  int batches = 0;
  bool ok = true;
  double bad_loss = 0;  // the loss of the failed step
  double seconds = 0, cpu = 0;
};

EpochOutcome run_epoch(Sequential& net, Optimizer& opt, const Dataset& d, const QatConfig& cfg, int epoch,
                       const EpochHooks& h, const char* label) {
  const std::vector<int> order = epoch_order(d.size(), cfg.seed, epoch);
  const size_t end = net.logits_end();
  const bool bar = cfg.progress && isatty(STDERR_FILENO);
  Tensor x, dlogits;
  std::vector<uint8_t> y;
  EpochOutcome o;
  const auto t0 = Clock::now();
  const double c0 = cpu_seconds();
  const int n = d.size();
  for (int b = 0; b < n; b += cfg.batch) {
    const int e = std::min(n, b + cfg.batch);
    gather_batch(d, order, b, e, x, y);
    const Tensor& logits = h.forward(x);
    dlogits.resize(logits.shape());
    const double loss = softmax_cross_entropy(logits, y.data(), &dlogits);
    if (!std::isfinite(loss)) {
      o.ok = false;
      o.bad_loss = loss;
      break;
    }
    net.backward(dlogits, end, /*accumulate=*/false);
    if (h.after_backward) h.after_backward();
    opt.step();
    if (h.after_step && !h.after_step()) {
      o.ok = false;
      o.bad_loss = loss;
      break;
    }
    o.loss_sum += loss;
    ++o.batches;
    if (h.on_loss) h.on_loss(loss);
    if (bar && (o.batches % 20 == 0 || e == n))
      std::fprintf(stderr, "\r%s epoch %2d  %3d%%  loss %.4f", label, epoch + 1, e * 100 / n, o.loss_sum / o.batches);
  }
  if (bar) std::fprintf(stderr, "\r\033[K");
  o.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  o.cpu = cpu_seconds() - c0;
  return o;
}

Optimizer sgd(Sequential& net, const QatConfig& cfg) {
  OptimConfig oc;
  oc.optimizer = "sgd";
  oc.lr = cfg.lr;
  oc.momentum = cfg.momentum;
  oc.weight_decay = cfg.weight_decay;
  return Optimizer(net, oc);
}

}  // namespace

nlohmann::json QatResult::to_json() const {
  nlohmann::json ep = nlohmann::json::array();
  for (const QatEpoch& e : epochs)
    ep.push_back({{"epoch", e.epoch}, {"loss", e.loss}, {"accuracy_fake_quant", e.accuracy_fake_quant},
                  {"seconds", e.seconds}, {"cpu_seconds", e.cpu_seconds}});
  nlohmann::json j = {{"accuracy", has_model ? nlohmann::json(accuracy) : nlohmann::json(nullptr)},
                      {"accuracy_fake_quant", has_model ? nlohmann::json(accuracy_fake_quant) : nlohmann::json(nullptr)},
                      {"fp32_accuracy", fp32_accuracy},
                      {"ptq_accuracy", ptq_accuracy},
                      {"loss_curve", loss_curve},
                      {"loss_curve_every", loss_every},
                      {"epochs", ep},
                      {"diverged", diverged},
                      {"notes", notes}};
  if (has_model) j["accuracy_difference_points"] = 100.0 * (accuracy_fake_quant - accuracy);
  if (diverged) j["diverged_message"] = diverged_message;
  return j;
}

QatResult run_qat(Sequential fp32, const Dataset& train_set, const Dataset& test_set, const QatConfig& cfg,
                  const QatEpochCallback& on_epoch) {
  validate(cfg);
  if (train_set.size() == 0) throw Error("--data: the training set is empty");
  QatResult r;
  r.loss_every = cfg.loss_every;
  r.fp32_accuracy = evaluate(fp32, test_set);
  QatNetwork qn(std::move(fp32), first_images(train_set, cfg.samples), cfg);
  {
    Engine e(qn.initial());
    r.ptq_accuracy = engine_accuracy(e, test_set.images, test_set.labels);
  }
  Sequential& net = qn.net();
  Optimizer opt = sgd(net, cfg);
  double window = 0;
  int in_window = 0, steps = 0;
  EpochHooks h;
  h.forward = [&](const Tensor& x) -> const Tensor& { return qn.forward_train(x); };
  h.after_backward = [&] { qn.finish_backward(); };
  h.after_step = [&] {
    qn.update_ranges();
    return qn.prepare();
  };
  h.on_loss = [&](double loss) {
    ++steps;
    window += loss;
    if (++in_window == cfg.loss_every) {
      r.loss_curve.push_back(window / in_window);
      window = 0;
      in_window = 0;
    }
  };
  for (int epoch = 0; epoch < cfg.epochs; ++epoch) {
    const EpochOutcome o = run_epoch(net, opt, train_set, cfg, epoch, h, "qat");
    if (!o.ok) {
      r.diverged = true;
      r.diverged_message = fmt::format(
          "training diverged at epoch {}, batch {} (step {}): {}; {}", epoch + 1, o.batches + 1, steps + 1,
          std::isfinite(o.bad_loss) ? "a weight, range or step size became NaN/Inf" : fmt::format("the loss is {}", o.bad_loss),
          r.epochs.empty() ? "no epoch finished, so there is no model to keep (try a smaller --lr)"
                           : fmt::format("keeping the model of epoch {} (try a smaller --lr)", r.epochs.back().epoch));
      break;
    }
    QatEpoch ep;
    ep.epoch = epoch + 1;
    ep.seconds = o.seconds;
    ep.cpu_seconds = o.cpu;
    ep.loss = o.loss_sum / std::max(1, o.batches);
    ep.accuracy_fake_quant = evaluate(net, test_set);
    std::vector<std::string> notes;
    r.qmodel = qn.to_qmodel(&notes);
    r.notes = notes;
    r.has_model = true;
    r.accuracy_fake_quant = ep.accuracy_fake_quant;
    r.epochs.push_back(ep);
    if (on_epoch) on_epoch(ep, qn);
  }
  if (in_window > 0) r.loss_curve.push_back(window / in_window);
  if (r.has_model) {
    Engine e(r.qmodel);
    r.accuracy = engine_accuracy(e, test_set.images, test_set.labels);
  }
  return r;
}

std::vector<FinetuneEpoch> finetune_fp32(Sequential& fp32, const Dataset& train_set, const Dataset& test_set,
                                         const QatConfig& cfg) {
  validate(cfg);
  if (train_set.size() == 0) throw Error("--data: the training set is empty");
  Optimizer opt = sgd(fp32, cfg);
  EpochHooks h;
  h.forward = [&](const Tensor& x) -> const Tensor& { return fp32.forward(x, Sequential::Keep::backward); };
  std::vector<FinetuneEpoch> out;
  for (int epoch = 0; epoch < cfg.epochs; ++epoch) {
    const EpochOutcome o = run_epoch(fp32, opt, train_set, cfg, epoch, h, "fp32");
    if (!o.ok)
      throw Error(fmt::format("FP32 fine-tuning diverged at epoch {}, batch {}: the loss is {} (try a smaller --lr)",
                              epoch + 1, o.batches + 1, o.bad_loss));
    FinetuneEpoch e;
    e.epoch = epoch + 1;
    e.loss = o.loss_sum / std::max(1, o.batches);
    e.seconds = o.seconds;
    e.cpu_seconds = o.cpu;
    e.accuracy = evaluate(fp32, test_set);
    out.push_back(e);
  }
  return out;
}

}  // namespace lowbit
