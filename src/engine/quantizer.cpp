// Post-training quantization (DESIGN.md section 3, ALGORITHMS.md "Range calibration"): walks an
// FP32 Sequential, calibrates activation ranges on calibration images, quantizes weights and
// biases, and fills the integer QModel of engine.h.
// Not here: the quantization math (src/quant), requantization multipliers (compute_requant in
// engine.cpp), running the model (engine.cpp), statistics for `lowbit stats` (stats.cpp).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <optional>

#include <fmt/format.h>

#include "lowbit/quantizer.h"

namespace lowbit {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// One op of the plan, with what calibration must observe for it.
struct Step {
  QOp op;
  size_t layer = 0;         // index of the conv/linear/pool/flatten layer in the Sequential
  int observer = -1;        // weighted ops: index into the observers of its output tensor
  size_t act_index = 0;     // weighted ops: Sequential::activation index of that output
};

std::string layer_label(const Sequential& m, size_t i) {
  return fmt::format("layer {} ({})", m.name(i), m.layer(i).type());
}

// Turns the layer list into ops; fuses ReLU; rejects what the engine cannot run.
std::vector<Step> plan_ops(const Sequential& m, bool observe_after_pool, std::vector<std::string>& notes) {
  std::vector<Step> steps;
  for (size_t i = 0; i < m.size(); ++i) {
    const Layer& l = m.layer(i);
    const std::string t = l.type();
    Step s;
    s.layer = i;
    s.op.name = m.name(i);
    if (const auto* c = dynamic_cast<const Conv2d*>(&l)) {
      s.op.kind = QOpKind::conv;
      s.op.in_ch = c->in_ch;
      s.op.out_ch = c->out_ch;
      s.op.kernel = c->kernel;
      s.op.stride = c->stride;
      s.op.pad = c->pad;
    } else if (const auto* f = dynamic_cast<const Linear*>(&l)) {
      s.op.kind = QOpKind::linear;
      s.op.in_ch = f->in_f;
      s.op.out_ch = f->out_f;
    } else if (const auto* p = dynamic_cast<const Pool2d*>(&l)) {
      if (p->kernel != 2 || p->stride != 2)
        throw Error(fmt::format("{} with kernel {} and stride {} is not supported by the integer engine "
                                "(it runs 2x2 pooling with stride 2 only)",
                                layer_label(m, i), p->kernel, p->stride));
      s.op.kind = p->kind == PoolKind::max ? QOpKind::maxpool : QOpKind::avgpool;
      s.op.kernel = 2;
      s.op.stride = 2;
    } else if (t == "Flatten") {
      s.op.kind = QOpKind::flatten;
    } else if (t == "Softmax" && i + 1 == m.size()) {
      notes.push_back(fmt::format("{} dropped: the engine outputs logits; softmax does not change the arg-max",
                                  layer_label(m, i)));
      continue;
    } else {
      throw Error(fmt::format("{} is not supported by the integer engine (it runs Conv2d/Linear with an "
                              "optional ReLU right after them, 2x2 pooling and Flatten)",
                              layer_label(m, i)));
    }
    if (s.op.weighted()) {
      s.act_index = i + 1;
      if (i + 1 < m.size()) {
        const auto* a = dynamic_cast<const Activation*>(&m.layer(i + 1));
        if (a && a->kind == ActKind::relu) {
          s.op.relu = true;
          s.act_index = i + 2;  // observe the post-ReLU tensor
          ++i;
        }
      }
      // A max pool next stores only its maxima, in the op's scale: calibrate on them.
      const auto* pool = i + 1 < m.size() ? dynamic_cast<const Pool2d*>(&m.layer(i + 1)) : nullptr;
      if (observe_after_pool && pool && pool->kind == PoolKind::max) s.act_index = i + 2;
    }
    steps.push_back(std::move(s));
  }
  size_t last_weighted = steps.size();
  for (size_t k = 0; k < steps.size(); ++k)
    if (steps[k].op.weighted()) last_weighted = k;
  if (last_weighted == steps.size()) throw Error("the model has no Conv2d or Linear layer to quantize");
  if (last_weighted + 1 != steps.size() || steps[last_weighted].op.relu)
    throw Error(fmt::format("the model must end with a Conv2d or Linear layer without ReLU (its int32 "
                            "accumulators become the logits); layer {} is not the last",
                            steps[last_weighted].op.name));
  return steps;
}

// Copies images [b0, b1) of a batch-major tensor into x.
void slice_batch(const Tensor& images, int b0, int b1, Tensor& x) {
  Shape s = images.shape();
  s[0] = b1 - b0;
  x.resize(s);
  const int64_t per = images.numel() / images.dim(0);
  std::memcpy(x.data(), images.data() + int64_t{b0} * per, static_cast<size_t>(int64_t{b1 - b0} * per) * sizeof(float));
}

bool weight_clip_mse(const PtqConfig& cfg) {
  return cfg.weight_clip == "mse" || (cfg.weight_clip == "auto" && cfg.wbits < 8);
}

QParams weight_qparams(float scale, int bits) {
  QParams qp;
  qp.scale = scale;
  qp.zero_point = 0;
  qp.bits = bits;
  qp.narrow = true;
  qp.scheme = Scheme::Symmetric;
  return qp;
}

// round(v) in double with the configured rounding: bias values reach 2^31, beyond float's 2^24
// exact integers, so this is quant_round's rule (nearest ties-to-even, or floor) in double.
double round_double(double v, Rounding r) { return r == Rounding::Nearest ? std::nearbyint(v) : std::floor(v); }

struct LayerWeights {
  const Tensor* w = nullptr;
  const Tensor* b = nullptr;  // null without bias
};

LayerWeights layer_weights(const Layer& l) {
  if (const auto* c = dynamic_cast<const Conv2d*>(&l)) return {&c->weight, c->has_bias ? &c->bias : nullptr};
  const auto& f = dynamic_cast<const Linear&>(l);
  return {&f.weight, f.has_bias ? &f.bias : nullptr};
}

// Weights and bias of one weighted op; op.in must be set. Fills weight, w_scale, bias.
// The largest |int32 bias| of an op with K-long sums. The engine needs
// |bias - z_in_u * sum_k W| + 255*128*K < 2^31 (qbias_eff); since |z_in_u * sum_k W| <= 255*127*K,
// |bias| <= this is always enough.
double bias_limit(int k) { return 2147483647.0 - 255.0 * 255.0 * static_cast<double>(k); }

void quantize_weights(QOp& op, const LayerWeights& lw, const PtqConfig& cfg, std::vector<std::string>& notes) {
  const int oc = op.out_ch, k = op.k();
  const int64_t n = int64_t{oc} * k;
  const std::string wname = op.name + ".weight";
  if (lw.w->numel() != n)
    throw Error(fmt::format("{}: has {} values, expected {} x {}", wname, lw.w->numel(), oc, k));
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite((*lw.w)[i]))
      throw Error(fmt::format("{}: {} at index {}", wname, std::isnan((*lw.w)[i]) ? "NaN" : "Inf", i));
  std::vector<float> w(lw.w->data(), lw.w->data() + n);

  if (cfg.abc_bases > 0) {  // ABC-Net: replace W by sum_i alpha_i B_i (per channel or whole tensor)
    if (cfg.per_channel) {
      for (int c = 0; c < oc; ++c) {
        AbcBases a = abc_bases(w.data() + int64_t{c} * k, k, cfg.abc_bases);
        std::copy(a.approx.begin(), a.approx.end(), w.begin() + int64_t{c} * k);
      }
    } else {
      AbcBases a = abc_bases(w.data(), n, cfg.abc_bases);
      w = a.approx;
    }
    op.abc_bases = cfg.abc_bases;
  }

  // Symmetric scales: per channel, or one for the tensor.
  float amax_all = 0;
  for (float v : w) amax_all = std::max(amax_all, std::fabs(v));
  const float tensor_scale = choose_qparams(-amax_all, amax_all, cfg.wbits, Scheme::Symmetric, true, wname).scale;
  op.w_scale.assign(static_cast<size_t>(oc), tensor_scale);
  if (amax_all == 0.0f) notes.push_back(fmt::format("{}: all weights are 0 (scale 1)", wname));
  std::vector<char> dead(static_cast<size_t>(oc), 0);
  if (cfg.per_channel) {
    std::vector<QParams> qp = choose_qparams_per_channel(w.data(), oc, k, cfg.wbits, Scheme::Symmetric, true, wname);
    int ndead = 0;
    for (int c = 0; c < oc; ++c) {
      bool zero = true;
      for (int64_t j = 0; j < k && zero; ++j) zero = w[static_cast<size_t>(int64_t{c} * k + j)] == 0.0f;
      // An all-zero channel keeps the tensor's scale (its codes are 0 either way), so that its
      // multiplier stays in the range of the others instead of s = 1.
      dead[size_t(c)] = zero;
      ndead += zero;
      op.w_scale[static_cast<size_t>(c)] = zero ? tensor_scale : qp[static_cast<size_t>(c)].scale;
    }
    if (ndead > 0 && amax_all != 0.0f)
      notes.push_back(fmt::format("{}: {} all-zero output channel(s) get the tensor's scale", wname, ndead));
  }

  if (weight_clip_mse(cfg)) {
    // The scale with the least squared error sum (w - fake_quantize(w))^2 among 51 clips of the
    // max scale; ties keep the larger clip. Per channel, or once for the whole tensor.
    auto refine = [&](const float* x, int64_t m, float s_max) {
      float best = s_max;
      double best_err = -1;
      for (int step = 100; step >= 50; --step) {
        const float s = s_max * static_cast<float>(step) / 100.0f;
        const QParams qp = weight_qparams(s, cfg.wbits);
        double e = 0;
        for (int64_t j = 0; j < m; ++j) {
          const double d = double{x[j]} - double{fake_quantize(x[j], qp, cfg.rounding)};
          e += d * d;
        }
        if (best_err < 0 || e < best_err) best_err = e, best = s;
      }
      return best;
    };
    if (cfg.per_channel) {
      for (int c = 0; c < oc; ++c)
        if (!dead[size_t(c)]) op.w_scale[size_t(c)] = refine(w.data() + int64_t{c} * k, k, op.w_scale[size_t(c)]);
    } else if (amax_all != 0.0f) {
      op.w_scale.assign(static_cast<size_t>(oc), refine(w.data(), n, tensor_scale));
    }
  }

  op.weight.assign(static_cast<size_t>(n), 0);
  auto quantize_channel = [&](int c) {
    quantize_array(w.data() + int64_t{c} * k, k, weight_qparams(op.w_scale[static_cast<size_t>(c)], cfg.wbits),
                   cfg.rounding, op.weight.data() + int64_t{c} * k, wname);
  };
  for (int c = 0; c < oc; ++c) quantize_channel(c);
  if (!lw.b) {
    op.bias.clear();
    return;
  }

  // Bias in units of s_w[c] * s_in, |bias| <= bias_limit(k).
  const std::string bname = op.name + ".bias";
  const int64_t kk = k;
  const double limit = bias_limit(k);
  if (limit < 1.0) throw Error(fmt::format("{}: K = {} is too deep for int32 accumulators", op.name, k));
  const int32_t z_in_u = op.in.zero_point + 128;
  const double s_in = op.in.scale;
  for (int64_t c = 0; c < oc; ++c)
    if (!std::isfinite((*lw.b)[c]))
      throw Error(fmt::format("{}: {} at index {}", bname, std::isnan((*lw.b)[c]) ? "NaN" : "Inf", c));
  auto fits = [&](int c) {
    const double v = round_double((*lw.b)[c] / (static_cast<double>(op.w_scale[static_cast<size_t>(c)]) * s_in), cfg.rounding);
    if (std::fabs(v) > 2147483647.0) return false;
    int64_t sum = 0;
    for (int64_t j = 0; j < k; ++j) sum += op.weight[static_cast<size_t>(c * kk + j)];
    const int64_t eff = static_cast<int64_t>(v) - int64_t{z_in_u} * sum;
    return std::llabs(eff) + 255LL * 128LL * kk < (int64_t{1} << 31);
  };
  // Smallest scale at which |b| / (s_w * s_in) <= limit, with a margin for rounding.
  auto needed_scale = [&](int c) {
    return static_cast<float>(std::fabs((*lw.b)[c]) / (s_in * limit) * (1.0 + 1e-6));
  };
  if (cfg.per_channel) {
    for (int c = 0; c < oc; ++c) {
      if (fits(c)) continue;
      const float old = op.w_scale[static_cast<size_t>(c)];
      op.w_scale[static_cast<size_t>(c)] = std::max(old, needed_scale(c));
      quantize_channel(c);
      notes.push_back(fmt::format("{}[{}] = {} does not fit the int32 accumulator at scale s_w * s_in = {:.3g}; "
                                  "widened that channel's weight scale from {:.4g} to {:.4g}",
                                  bname, c, (*lw.b)[c], double(old) * s_in, old, op.w_scale[static_cast<size_t>(c)]));
    }
  } else {
    int bad = -1;
    for (int c = 0; c < oc && bad < 0; ++c)
      if (!fits(c)) bad = c;
    if (bad >= 0) {
      float s = tensor_scale;
      for (int c = 0; c < oc; ++c) s = std::max(s, needed_scale(c));
      op.w_scale.assign(static_cast<size_t>(oc), s);
      for (int c = 0; c < oc; ++c) quantize_channel(c);
      notes.push_back(fmt::format("{}[{}] = {} does not fit the int32 accumulator at scale s_w * s_in = {:.3g}; "
                                  "widened the layer's weight scale from {:.4g} to {:.4g}",
                                  bname, bad, (*lw.b)[bad], double(tensor_scale) * s_in, tensor_scale, s));
    }
  }
  op.bias.resize(static_cast<size_t>(oc));
  for (int c = 0; c < oc; ++c) {
    if (!fits(c))  // cannot happen by construction of needed_scale; kept as a guard
      throw Error(fmt::format("{}[{}]: does not fit int32 even after widening the weight scale", bname, c));
    const double v = round_double((*lw.b)[c] / (static_cast<double>(op.w_scale[static_cast<size_t>(c)]) * s_in), cfg.rounding);
    op.bias[static_cast<size_t>(c)] = static_cast<int32_t>(v);
  }
}

nlohmann::json tensor_info(const std::string& name, Calibrator c, const TensorObserver& o, const ClipRange& r,
                           const QParams& qp) {
  return {{"tensor", name},
          {"calibrator", calibrator_name(c)},
          {"observed", {o.minmax().min(), o.minmax().max()}},
          {"clip", {r.lo, r.hi}},
          {"scale", qp.scale},
          {"zero_point", qp.zero_point}};
}

// A spike, a bin holding more than 1% of the values and more than 8 times the mean count per bin,
// is capped at the larger of its two neighbours. Such a one-bin spike is a point mass: the constant background of padded images
// gives one per conv1 channel (after ReLU, each holds ~9% of the non-zero values of this LeNet-5).
// KL's candidate Q spreads every group uniformly and can never match a spike at any threshold, so
// the spikes, not the quantization error, decide the threshold (conv1 clipped at 31% of its max,
// -1.1 points at int8). ALGORITHMS.md trouble (a) is the spike at 0; NVIDIA's bins[0] = bins[1]
// is this rule for bin 0. The two conditions leave sparse tails alone (isolated bins of a few
// values are sampling noise, not point masses); smooth parts change little, as their neighbours
// are as high.
Histogram despike(const Histogram& h) {
  Histogram d = h;
  const double total = static_cast<double>(h.total());
  const double big = std::max(0.01 * total, 8.0 * total / std::max(1, h.bins()));
  for (size_t i = 0; i < h.counts.size(); ++i) {
    if (static_cast<double>(h.counts[i]) <= big) continue;
    const int64_t left = i > 0 ? h.counts[i - 1] : 0;
    const int64_t right = i + 1 < h.counts.size() ? h.counts[i + 1] : 0;
    d.counts[i] = std::min(h.counts[i], std::max(left, right));
  }
  return d.total() > 0 ? d : h;  // a histogram of one spike only: nothing else to calibrate on
}

// Bits the level-aware calibrators (kl, mse) assume. They model a symmetric quantizer over
// [-T, T], 2^(b-1) levels for |x|; an affine quantizer of a tensor without negative values (after
// ReLU) spends all 2^b levels on [0, T], as a symmetric (b+1)-bit one would (NVIDIA's
// pytorch-quantization: nbins = 2^(bits - 1 + unsigned)). quant.h calibrators accept at most 8
// bits, so at 8 bits this stays 8 (slightly conservative: a little more clipping than optimal).
int calibration_bits(const TensorObserver& o, const PtqConfig& cfg) {
  const bool one_sided = cfg.act_scheme == Scheme::Affine && o.minmax().min() >= 0.0f;
  return one_sided && cfg.abits < 8 ? cfg.abits + 1 : cfg.abits;
}

// TensorObserver::calibrate's 3sigma rule ([mean - 3 std, mean + 3 std] within [min, max]) with
// the moments of the non-zero values only, as the histograms of the other calibrators. After ReLU
// about half the values are exact zeros (exact under every scheme); counting them shrinks mean and
// std, and the range then clips the values that need resolution: on this LeNet-5, 3sigma over all
// values clips conv1..fc1 at 29-41% of their max and costs 0.6 points at int8; over the non-zero
// values 0.07.
ClipRange three_sigma_range(const MinMaxObserver& mm, const MomentsObserver& nz) {
  const float lo = mm.min(), hi = mm.max();
  const double m = nz.mean(), s3 = 3.0 * nz.stddev();
  const float a = std::max(lo, static_cast<float>(m - s3));
  const float b = std::min(hi, static_cast<float>(m + s3));
  return {std::min(a, b), std::max(a, b)};
}

ClipRange calibrate_tensor(const TensorObserver& o, Calibrator c, const PtqConfig& cfg) {
  CalibOptions opt;
  opt.bits = calibration_bits(o, cfg);
  opt.percentile = cfg.percentile;
  if (c != Calibrator::Kl || !cfg.kl_despike) return o.calibrate(c, opt);
  // TensorObserver::calibrate's mapping of a threshold T on |x| to a range, on the despiked histogram.
  const float t = kl_threshold(despike(o.histogram()), opt.bits);
  const float lo = o.minmax().min(), hi = o.minmax().max();
  ClipRange r{std::max(lo, -t), std::min(hi, t)};
  if (r.lo > r.hi) {
    if (lo > 0)
      r.lo = r.hi;
    else
      r.hi = r.lo;
  }
  return r;
}


// Empirical bias correction of op oi (Nagel et al., "Data-Free Quantization Through Weight
// Equalization and Bias Correction", ICCV 2019, section 4.2): E[y_q - y] per output channel, y_q
// the simulated pre-activation of the quantized model (earlier ops already corrected), y the FP32
// one, averaged over the calibration images and output positions, comes off the int32 bias.
// Without it, 4-bit weights and clipped activations shift every channel's mean, and ReLU and max
// pooling pass the shift on.
void correct_bias(QModel& q, int oi, Sequential& fp32, size_t act, const Tensor& images, const PtqConfig& cfg,
                  std::vector<std::string>& notes) {
  QOp& op = q.ops[static_cast<size_t>(oi)];
  const int oc = op.out_ch, N = images.dim(0);
  std::vector<double> diff(static_cast<size_t>(oc), 0.0);
  int64_t per_channel = 0;
  Tensor x, pre;
  for (int b0 = 0; b0 < N; b0 += cfg.calib_batch) {
    const int b1 = std::min(N, b0 + cfg.calib_batch);
    slice_batch(images, b0, b1, x);
    fp32.forward(x);
    const Tensor& ref = fp32.activation(act);
    simulate(q, x, pre, oi);
    if (pre.numel() != ref.numel()) throw Error(op.name + ": simulated and FP32 outputs differ in size");
    const int64_t plane = ref.numel() / (int64_t{b1 - b0} * oc);
    for (int64_t i = 0; i < ref.numel(); ++i) diff[static_cast<size_t>(i / plane % oc)] += double{pre[i]} - ref[i];
    per_channel += int64_t{b1 - b0} * plane;
  }
  const double limit = bias_limit(op.k());
  if (op.bias.empty()) op.bias.assign(static_cast<size_t>(oc), 0);  // a layer without bias gets one
  int clamped = 0;
  for (int c = 0; c < oc; ++c) {
    const double unit = double{op.w_scale[static_cast<size_t>(c)]} * op.in.scale;
    const double mean = diff[static_cast<size_t>(c)] / static_cast<double>(per_channel);
    const double v = static_cast<double>(op.bias[static_cast<size_t>(c)]) - round_double(mean / unit, cfg.rounding);
    const double kept = std::clamp(v, -limit, limit);
    clamped += kept != v;
    op.bias[static_cast<size_t>(c)] = static_cast<int32_t>(kept);
  }
  if (clamped)
    notes.push_back(fmt::format("{}: bias correction limited in {} channel(s) to keep the int32 accumulator in range",
                                op.name, clamped));
}

}  // namespace

void validate(const PtqConfig& cfg) {
  try {
    check_bits(cfg.wbits);
  } catch (const Error& e) {
    throw Error(std::string("wbits: ") + e.what());
  }
  try {
    check_bits(cfg.abits);
  } catch (const Error& e) {
    throw Error(std::string("abits: ") + e.what());
  }
  if (cfg.requant != "fixedpoint" && cfg.requant != "float" && cfg.requant != "divide")
    throw Error("requant: unknown variant '" + cfg.requant + "' (allowed: fixedpoint, float, divide)");
  if (cfg.abc_bases < 0 || cfg.abc_bases > 5)
    throw Error(fmt::format("abc_bases: must be in 0..5, got {}", cfg.abc_bases));
  if (!(cfg.percentile > 0.0 && cfg.percentile <= 100.0))
    throw Error(fmt::format("percentile: must be in (0, 100], got {}", cfg.percentile));
  if (cfg.weight_clip != "auto" && cfg.weight_clip != "max" && cfg.weight_clip != "mse")
    throw Error("weight_clip: unknown '" + cfg.weight_clip + "' (allowed: auto, max, mse)");
  if (cfg.bias_correction != "auto" && cfg.bias_correction != "on" && cfg.bias_correction != "off")
    throw Error("bias_correction: unknown '" + cfg.bias_correction + "' (allowed: auto, on, off)");
  if (cfg.calib_batch < 1) throw Error(fmt::format("calib_batch: must be >= 1, got {}", cfg.calib_batch));
}

QModel quantize_model(Sequential& fp32, const Tensor& calib_images, const PtqConfig& cfg,
                      std::vector<std::string>* notes_out) {
  validate(cfg);
  const auto t_start = Clock::now();
  std::vector<std::string> notes;
  std::vector<Step> steps = plan_ops(fp32, cfg.observe_after_pool, notes);

  // Calibration images: (N, input_shape...), N >= 1.
  if (calib_images.rank() == 0 || calib_images.dim(0) == 0)
    throw Error("calibration set is empty (need at least one image)");
  {
    Shape per(calib_images.shape().begin() + 1, calib_images.shape().end());
    if (per != fp32.input_shape)
      throw Error(fmt::format("calibration images have shape {} per image, the model expects {}", shape_str(per),
                              shape_str(fp32.input_shape)));
  }
  const int N = calib_images.dim(0);

  // Observers: 0 = network input, then one per weighted op's (post-ReLU, post-max-pool) output.
  std::vector<TensorObserver> obs;
  std::vector<size_t> obs_act;  // Sequential::activation index
  std::vector<Calibrator> obs_cal;
  std::vector<std::string> obs_name;
  obs.emplace_back("input");
  obs_act.push_back(0);
  obs_cal.push_back(cfg.input_calibrator);
  obs_name.push_back("input");
  for (Step& s : steps)
    if (s.op.weighted()) {
      s.observer = static_cast<int>(obs.size());
      obs.emplace_back(s.op.name + ".out");
      obs_act.push_back(s.act_index);
      obs_cal.push_back(cfg.calibrator);
      obs_name.push_back(s.op.name);
    }
  // 3sigma over the non-zero values (PtqConfig::sigma_nonzero): their own moments.
  std::vector<std::optional<MomentsObserver>> nonzero(obs.size());
  for (size_t o = 0; o < obs.size(); ++o)
    if (obs_cal[o] == Calibrator::ThreeSigma && cfg.sigma_nonzero) nonzero[o].emplace(obs_name[o]);
  bool need_hist = false;
  for (Calibrator c : obs_cal) need_hist = need_hist || calibrator_needs_histogram(c);

  // Two passes over the same batches, in the same order.
  double t_forward = 0, t_range = 0, t_hist = 0;
  Tensor x;
  const int passes = need_hist ? 2 : 1;
  for (int pass = 0; pass < passes; ++pass) {
    for (int b0 = 0; b0 < N; b0 += cfg.calib_batch) {
      const int b1 = std::min(N, b0 + cfg.calib_batch);
      auto t0 = Clock::now();
      slice_batch(calib_images, b0, b1, x);
      fp32.forward(x);
      t_forward += seconds_since(t0);
      t0 = Clock::now();
      // Observers are independent: threads take whole tensors, so each still sees its values in
      // batch order and the statistics do not depend on the thread count.
      const int nobs = static_cast<int>(obs.size());
      std::vector<std::exception_ptr> errors(obs.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(std::max(1, std::min(threads(), nobs)))
      for (int o = 0; o < nobs; ++o) {
        try {
          const Tensor& a = fp32.activation(obs_act[static_cast<size_t>(o)]);
          if (pass == 0) {
            obs[static_cast<size_t>(o)].observe_range(a.data(), a.numel());
            if (nonzero[static_cast<size_t>(o)]) {
              std::vector<float> nz;
              for (int64_t i = 0; i < a.numel(); ++i)
                if (a[i] != 0.0f) nz.push_back(a[i]);
              nonzero[static_cast<size_t>(o)]->observe(nz.data(), static_cast<int64_t>(nz.size()));
            }
          } else if (calibrator_needs_histogram(obs_cal[static_cast<size_t>(o)]))
            obs[static_cast<size_t>(o)].observe_hist(a.data(), a.numel());
        } catch (...) {
          errors[static_cast<size_t>(o)] = std::current_exception();
        }
      }
      for (const std::exception_ptr& e : errors)
        if (e) std::rethrow_exception(e);
      (pass == 0 ? t_range : t_hist) += seconds_since(t0);
    }
  }

  // Clip ranges -> activation QParams.
  auto t0 = Clock::now();
  std::vector<QParams> act_qp(obs.size());
  nlohmann::json tensors = nlohmann::json::array();
  for (size_t o = 0; o < obs.size(); ++o) {
    const ClipRange r = nonzero[o] ? three_sigma_range(obs[o].minmax(), *nonzero[o])
                                   : calibrate_tensor(obs[o], obs_cal[o], cfg);
    act_qp[o] = choose_qparams(r.lo, r.hi, cfg.abits, cfg.act_scheme, false, obs_name[o]);
    tensors.push_back(tensor_info(obs_name[o], obs_cal[o], obs[o], r, act_qp[o]));
    // The FP32 activation calibrated (activation a is the output of layer a - 1).
    tensors.back()["observed_at"] = obs_act[o] == 0 ? "input" : fp32.name(obs_act[o] - 1);
    if (calibrator_needs_histogram(obs_cal[o])) tensors.back()["calibration_bits"] = calibration_bits(obs[o], cfg);
  }
  const double t_calibrate = seconds_since(t0);
  const double t_calibration = seconds_since(t_start);

  // Ops: chain activation parameters, quantize weights and biases, requantization multipliers.
  QModel q;
  q.architecture = fp32.architecture;
  q.input_shape = fp32.input_shape;
  q.input = act_qp[0];
  q.rounding = cfg.rounding;
  q.variant = requant_variant(cfg.requant, cfg.rounding);
  QParams cur = q.input;
  if (cfg.abc_bases > 0) {
    notes.push_back(fmt::format(
        "ABC-Net: each layer's weights are replaced by the sum of {} scaled binary bases ({}), then stored as "
        "{}-bit integers; a sum of M binary bases takes up to 2^M distinct values spread unevenly, so it needs "
        "more than M bits to be kept exactly: use --wbits 8",
        cfg.abc_bases, cfg.per_channel ? "per output channel" : "per tensor", cfg.wbits));
  }
  std::vector<std::pair<size_t, size_t>> weighted;  // (op index, FP32 activation of its pre-activation)
  for (size_t k = 0; k < steps.size(); ++k) {
    Step& s = steps[k];
    if (s.op.weighted()) weighted.emplace_back(k, s.layer + 1);
    s.op.in = cur;
    s.op.wbits = cfg.wbits;
    if (s.op.weighted()) {
      s.op.per_channel = cfg.per_channel;
      s.op.out = act_qp[static_cast<size_t>(s.observer)];
      quantize_weights(s.op, layer_weights(fp32.layer(s.layer)), cfg, notes);
      if (k + 1 != steps.size()) compute_requant(s.op, &notes);
    } else {
      s.op.out = cur;  // pooling and flatten keep scale and zero point
    }
    cur = s.op.out;
    q.ops.push_back(std::move(s.op));
  }

  t0 = Clock::now();
  const bool bias_correction = cfg.bias_correction == "on" || (cfg.bias_correction == "auto" && cfg.wbits < 8);
  if (bias_correction)
    for (auto [oi, act] : weighted) correct_bias(q, static_cast<int>(oi), fp32, act, calib_images, cfg, notes);
  const double t_bias = seconds_since(t0);

  q.info = {{"source_architecture", fp32.architecture},
            {"calibrator", calibrator_name(cfg.calibrator)},
            {"input_calibrator", calibrator_name(cfg.input_calibrator)},
            {"wbits", cfg.wbits},
            {"abits", cfg.abits},
            {"per_channel", cfg.per_channel},
            {"weight_scheme", "symmetric narrow"},
            {"act_scheme", scheme_name(cfg.act_scheme)},
            {"rounding", rounding_name(cfg.rounding)},
            {"requant", cfg.requant},
            {"abc_bases", cfg.abc_bases},
            {"percentile", cfg.percentile},
            {"calibration_images", N},
            {"calib_batch", cfg.calib_batch},
            {"kl_despike", cfg.kl_despike},
            {"sigma_nonzero", cfg.sigma_nonzero},
            {"observe_after_pool", cfg.observe_after_pool},
            {"weight_clip", weight_clip_mse(cfg) ? "mse" : "max"},
            {"bias_correction", bias_correction},
            {"tensors", tensors},
            {"notes", notes}};
  q.timing = {{"total", t_calibration},
              {"forward", t_forward},
              {"observe_range", t_range},
              {"observe_hist", t_hist},
              {"calibrate", t_calibrate},
              {"bias_correction", t_bias}};
  if (notes_out) notes_out->insert(notes_out->end(), notes.begin(), notes.end());
  return q;
}

}  // namespace lowbit
