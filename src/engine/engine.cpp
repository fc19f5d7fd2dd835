// The integer engine: requantization parameters, the runner, and the float PTQ simulation.
// Runner layout: threads take tiles of `tile` images; for each tile every op runs in turn with
// u8 activations in per-thread buffers (NCHW per image; after a 1x1-output conv or a linear layer
// the tile is batch-major (t, features), which is the same thing). The final weighted op writes
// int32 accumulators that become logits acc * s_w[c] * s_in.
#include "lowbit/engine.h"


#include <algorithm>
#include <cmath>

#include "core/aligned_vector.h"
#include "kernels/dispatch.h"
#include "kernels/qkernels.h"
#include "lowbit/nn.h"
#include "nn/parallel.h"

namespace lowbit {

const char* qop_kind_name(QOpKind k) {
  switch (k) {
    case QOpKind::conv: return "conv";
    case QOpKind::linear: return "linear";
    case QOpKind::maxpool: return "maxpool";
    case QOpKind::avgpool: return "avgpool";
    case QOpKind::flatten: return "flatten";
  }
  return "?";
}

int QModel::num_classes() const {
  for (size_t i = ops.size(); i-- > 0;)
    if (ops[i].weighted()) return ops[i].out_ch;
  return 0;
}

RequantVariant requant_variant(const std::string& name, Rounding r) {
  bool fl = r == Rounding::Floor;
  if (name == "fixedpoint") return fl ? RequantVariant::fixedpoint_floor : RequantVariant::fixedpoint;
  if (name == "float") return fl ? RequantVariant::float_floor : RequantVariant::float_nearest;
  if (name == "divide") return fl ? RequantVariant::divide_floor : RequantVariant::divide_nearest;
  throw Error("--requant must be fixedpoint, float or divide, got \"" + name + "\"");
}

static bool is_divide(RequantVariant v) {
  return v == RequantVariant::divide_nearest || v == RequantVariant::divide_floor;
}

void compute_requant(QOp& op, std::vector<std::string>* notes) {
  const size_t n = static_cast<size_t>(op.out_ch);
  op.m.assign(n, 0.0f);
  op.q31.assign(n, 0);
  op.shift.assign(n, 0);
  op.divisor.assign(n, 0);
  const double smallest = std::ldexp(1.0, -31);
  for (size_t c = 0; c < n; ++c) {
    double m = double{op.w_scale[c]} * op.in.scale / op.out.scale;
    if (!(m > 0) || !std::isfinite(m))
      throw Error(op.name + ": requantization multiplier of channel " + std::to_string(c) + " is " + std::to_string(m));
    if (m < smallest) {  // such a channel's output is 0 whatever the input: keep it representable
      if (notes) notes->push_back(op.name + ": channel " + std::to_string(c) + " multiplier " + std::to_string(m) +
                                  " raised to 2^-31 (the channel outputs its zero point)");
      m = smallest;
    }
    QuantizedMultiplier qm = quantize_multiplier(m);
    op.m[c] = static_cast<float>(m);
    op.q31[c] = qm.q31;
    op.shift[c] = qm.shift;
    // The divide variant needs M <= 2 (a divisor >= 1); 0 marks "not available".
    op.divisor[c] = (m <= 2.0 && 1.0 / m < 2147483647.0) ? divisor_for_multiplier(m) : 0;
  }
}

// ---- runner ----

namespace {

struct Prepared {
  const QOp* op;
  int c = 0, h = 0, w = 0;     // input per sample (linear: c = features, h = w = 1)
  int oc = 0, oh = 0, ow = 0;  // output per sample
  bool final = false;
  bool pool_fused = false;     // a 2x2 max pool follows: pooled on int32, then requantized
  bool direct = false;         // pool_fused by qconv_maxpool_u8 (no im2col)
  bool implicit = false;       // pool_fused with the accumulators from qconv_i32 (no im2col)
  std::vector<int8_t> wpad;    // (oc, qk4(K))
  std::vector<int8_t> wt;      // one output pixel per image: W^T for small batches (QGemmArgs::wt)
  std::vector<int8_t> wconv;   // direct: QConvPoolArgs::weight_packed
  std::vector<int32_t> bias_eff;
  std::vector<float> out_scale;  // final op: s_w[c] * s_in
  RequantParams rq;
  int64_t in_size() const { return int64_t{c} * h * w; }
  int64_t out_size() const { return int64_t{oc} * oh * ow; }
};

struct Scratch {
  AlignedVector<uint8_t> a, b, packed;
  AlignedVector<int32_t> acc;
};

}  // namespace

struct Engine::Impl {
  QModel q;
  std::vector<Prepared> ops;
  const KernelTable* k;
  std::vector<Scratch> scratch;
};

static std::string where(const QOp& op) { return "op " + op.name + " (" + qop_kind_name(op.kind) + ")"; }

Engine::Engine(const QModel& q, const KernelTable* table) : impl_(new Impl{q, {}, table ? table : &kernels(), {}}) {
  Impl& im = *impl_;
  if (q.input_shape.size() != 3) throw Error("quantized model: input_shape must be (C, H, W)");
  int c = q.input_shape[0], h = q.input_shape[1], w = q.input_shape[2];
  int last_weighted = -1;
  for (size_t i = 0; i < q.ops.size(); ++i)
    if (q.ops[i].weighted()) last_weighted = static_cast<int>(i);
  if (last_weighted < 0 || last_weighted + 1 != static_cast<int>(q.ops.size()))
    throw Error("quantized model: the last op must be a conv or linear layer");
  const bool divide = is_divide(q.variant);
  for (size_t i = 0; i < im.q.ops.size(); ++i) {
    const QOp& op = im.q.ops[i];
    Prepared p;
    p.op = &op;
    p.c = c, p.h = h, p.w = w;
    switch (op.kind) {
      case QOpKind::conv:
        if (op.in_ch != c) throw Error(where(op) + ": expects " + std::to_string(op.in_ch) + " channels, gets " + std::to_string(c));
        p.oc = op.out_ch;
        p.oh = qconv_out_size(h, op.kernel, op.stride, op.pad);
        p.ow = qconv_out_size(w, op.kernel, op.stride, op.pad);
        if (p.oh < 1 || p.ow < 1) throw Error(where(op) + ": kernel larger than its input");
        break;
      case QOpKind::linear:
        if (op.in_ch != c * h * w)
          throw Error(where(op) + ": expects " + std::to_string(op.in_ch) + " features, gets " + std::to_string(c * h * w));
        p.c = op.in_ch, p.h = p.w = 1;
        p.oc = op.out_ch, p.oh = p.ow = 1;
        break;
      case QOpKind::maxpool:
      case QOpKind::avgpool:
        if (op.kernel != 2 || op.stride != 2) throw Error(where(op) + ": the engine pools 2x2 with stride 2 only");
        if (h < 2 || w < 2) throw Error(where(op) + ": input smaller than the window");
        p.oc = c, p.oh = h / 2, p.ow = w / 2;
        break;
      case QOpKind::flatten:
        p.oc = c * h * w, p.oh = p.ow = 1;
        break;
    }
    if (op.weighted()) {
      const int K = op.k();
      p.final = static_cast<int>(i) == last_weighted;
      p.wpad.resize(static_cast<size_t>(op.out_ch) * qk4(K));
      qpad_weights_s8(op.weight.data(), op.out_ch, K, K, p.wpad.data());
      if (p.oh * p.ow == 1) {
        p.wt.resize(static_cast<size_t>(qk4(K)) * ((op.out_ch + 15) & ~15));
        qpack_weights_t_s8(op.weight.data(), op.out_ch, K, K, p.wt.data());
      }
      p.bias_eff.resize(static_cast<size_t>(op.out_ch));
      qbias_eff(op.weight.data(), op.out_ch, K, K, op.bias.empty() ? nullptr : op.bias.data(), op.in.zero_point + 128,
                p.bias_eff.data(), op.name.c_str());
      if (p.final) {
        for (int ch = 0; ch < op.out_ch; ++ch) p.out_scale.push_back(op.w_scale[size_t(ch)] * op.in.scale);
      } else {
        if (divide)
          for (int32_t d : op.divisor)
            if (d < 1) throw Error(where(op) + ": a multiplier above 2 cannot use --requant divide");
        p.rq.q31 = op.q31.data();
        p.rq.shift = op.shift.data();
        p.rq.scale = op.m.data();
        p.rq.divisor = op.divisor.data();
        p.rq.z_out = op.out.zero_point + 128;
        p.rq.lo = (op.relu ? op.out.zero_point : op.out.qmin()) + 128;
        p.rq.hi = op.out.qmax() + 128;
      }
    }
    c = p.oc, h = p.oh, w = p.ow;
    // conv -> 2x2/2 max pool: pool the accumulators, requantize a quarter as many values (exact:
    // requantization is non-decreasing), skip the u8 pool. Rows of up to 32 take the SIMD path.
    if (op.kind == QOpKind::conv && !p.final && i + 1 < q.ops.size() && q.ops[i + 1].kind == QOpKind::maxpool &&
        q.ops[i + 1].kernel == 2 && q.ops[i + 1].stride == 2 && p.ow <= 33)
      p.pool_fused = true;
    // Wide rows (more than 16 output columns) go to the direct kernel where the ISA has one: no
    // im2col, no int32 plane. Narrow ones (conv2's 10) waste its lanes: the GEMM is faster there.
    if (p.pool_fused && im.k->qconv_maxpool_u8 && op.stride == 1 && p.ow > 16 &&
        qconv_maxpool_fits(p.h, p.w, op.kernel, op.kernel, op.pad)) {
      p.direct = true;
      p.wconv.resize(size_t(qpack_weights_conv_s8(op.weight.data(), op.out_ch, p.c, op.kernel, op.kernel, op.k(), nullptr)));
      qpack_weights_conv_s8(op.weight.data(), op.out_ch, p.c, op.kernel, op.kernel, op.k(), p.wconv.data());
    }
    // Other unpadded stride-1 convs before a pool (conv2) take the implicit GEMM where the ISA has
    // it and an image has a full 16-pixel tile: im2col cost as much as the GEMM there.
    if (p.pool_fused && !p.direct && im.k->qconv_i32 && op.stride == 1 && op.pad == 0 && p.oh * p.ow >= 16 &&
        qconv_i32_fits(p.c, p.h, p.w, op.kernel, op.kernel)) {
      p.implicit = true;
      p.wt.resize(static_cast<size_t>(qk4(op.k())) * ((op.out_ch + 15) & ~15));
      qpack_weights_t_s8(op.weight.data(), op.out_ch, op.k(), op.k(), p.wt.data());
    }
    im.ops.push_back(std::move(p));
  }
}

Engine::~Engine() = default;

const char* Engine::isa() const { return isa_name(impl_->k->isa); }

std::string Engine::plan() const {
  std::string out;
  for (size_t i = 0; i < impl_->ops.size(); ++i) {
    const Prepared& p = impl_->ops[i];
    const QOp& op = *p.op;
    if (op.kind == QOpKind::flatten) continue;
    std::string how = op.kind == QOpKind::linear ? "GEMM" : qop_kind_name(op.kind);
    if (op.kind == QOpKind::conv)
      how = p.direct ? "direct conv" : p.implicit ? "implicit GEMM" : "im2col + GEMM";
    if (p.pool_fused) how += " + max pool", ++i;
    out += (out.empty() ? "" : "; ") + op.name + ": " + how;
  }
  return out;
}

// Runs images [0, t) of one tile: x (t, input) floats -> logits (t, classes). With keep != null,
// appends every op's u8 output to (*keep)[op] instead (the final op's entry stays empty).
static void run_tile(const Engine::Impl& im, Scratch& s, const float* x, int t, float* logits,
                     std::vector<std::vector<uint8_t>>* keep = nullptr) {
  const KernelTable& k = *im.k;
  const QModel& q = im.q;
  const int64_t in_n = shape_numel(q.input_shape) * t;
  room(s.a, in_n + kQConvSlack);  // activations: qconv_i32 reads up to kQConvSlack bytes past them
  if (q.rounding == Rounding::Nearest) {
    QQuantizeArgs qa{q.input.scale, q.input.zero_point + 128, q.input.qmin() + 128, q.input.qmax() + 128};
    k.qquantize_f32_u8(x, in_n, qa, s.a.data());
  } else {
    for (int64_t i = 0; i < in_n; ++i) s.a[size_t(i)] = static_cast<uint8_t>(quantize_value(x[i], q.input, q.rounding) + 128);
  }
  uint8_t* cur = s.a.data();
  for (size_t i = 0; i < im.ops.size(); ++i) {
    const Prepared& p = im.ops[i];
    const QOp& op = *p.op;
    if (keep && i > 0) {
      const Prepared& prev = im.ops[i - 1];
      (*keep)[i - 1].insert((*keep)[i - 1].end(), cur, cur + prev.out_size() * t);
    }
    if (op.kind == QOpKind::flatten) continue;
    AlignedVector<uint8_t>& next_buf = cur == s.a.data() ? s.b : s.a;
    const bool pool = p.pool_fused && !keep;  // trace() keeps every op's own output
    const int64_t next_size = (pool ? im.ops[i + 1].out_size() : p.out_size()) * t;
    uint8_t* next = p.final ? nullptr : room(next_buf, next_size + kQConvSlack);
    if (op.kind == QOpKind::maxpool || op.kind == QOpKind::avgpool) {
      (op.kind == QOpKind::maxpool ? k.qmaxpool2x2_u8 : k.qavgpool2x2_u8)(cur, int64_t{t} * p.c, p.h, p.w, next);
      cur = next;
      continue;
    }
    if (pool && p.direct) {
      QConvPoolArgs ca;
      ca.in = cur, ca.nb = t, ca.c = p.c, ca.h = p.h, ca.w = p.w, ca.in_bstride = p.in_size();
      ca.kh = ca.kw = op.kernel, ca.pad = op.pad, ca.pad_value = static_cast<uint8_t>(op.in.zero_point + 128);
      ca.m = op.out_ch, ca.weight = op.weight.data(), ca.ldw = op.k(), ca.weight_packed = p.wconv.data();
      ca.bias = p.bias_eff.data(), ca.rq = &p.rq, ca.variant = q.variant, ca.out = next;
      k.qconv_maxpool_u8(ca);
      cur = next;
      ++i;  // the pool op is done
      continue;
    }
    if (pool && p.implicit) {
      QConvI32Args ca;
      ca.in = cur, ca.nb = t, ca.c = p.c, ca.h = p.h, ca.w = p.w, ca.in_bstride = p.in_size();
      ca.kh = ca.kw = op.kernel, ca.m = op.out_ch, ca.weight = op.weight.data(), ca.ldw = op.k();
      ca.weight_t = p.wt.data(), ca.bias = p.bias_eff.data();
      ca.out = room(s.acc, p.out_size() * t);
      k.qconv_i32(ca);
      k.qmaxpool2x2_requant_i32({s.acc.data(), t, op.out_ch, p.oh, p.ow, &p.rq, q.variant, next});
      cur = next;
      ++i;  // the pool op is done
      continue;
    }
    const int K = op.k(), P = p.oh * p.ow, N = t * P;
    room(s.packed, int64_t{qk4(K)} * N);
    if (op.kind == QOpKind::conv) {
      QIm2colArgs ia;
      ia.in = cur, ia.nb = t, ia.c = p.c, ia.h = p.h, ia.w = p.w;
      ia.in_bstride = p.in_size(), ia.in_cstride = int64_t{p.h} * p.w;
      ia.kh = ia.kw = op.kernel, ia.stride = op.stride, ia.pad = op.pad;
      ia.pad_value = static_cast<uint8_t>(op.in.zero_point + 128);
      ia.out = s.packed.data();
      k.qim2col_u8(ia);
    } else {
      k.qpack_u8(cur, 1, K, K, t, s.packed.data());
    }
    QGemmArgs g;
    g.m = op.out_ch, g.n = N, g.k = K;
    g.w = p.wpad.data(), g.ldw = qk4(K);
    g.wt = p.wt.empty() ? nullptr : p.wt.data();
    g.x = s.packed.data();
    g.bias = p.bias_eff.data();
    g.ldc = P, g.cols_per_image = P, g.ldc_image = int64_t{op.out_ch} * P;
    if (p.final) {
      g.c_i32 = room(s.acc, int64_t{op.out_ch} * N);
      k.qgemm_u8s8(g);
      for (int n = 0; n < t; ++n)
        for (int ch = 0; ch < op.out_ch; ++ch)
          for (int px = 0; px < P; ++px) {
            int64_t idx = int64_t{n} * op.out_ch * P + int64_t{ch} * P + px;
            logits[idx] = static_cast<float>(s.acc[size_t(idx)]) * p.out_scale[size_t(ch)];
          }
      return;
    }
    if (pool) {
      g.c_i32 = room(s.acc, int64_t{op.out_ch} * N);
      k.qgemm_u8s8(g);
      k.qmaxpool2x2_requant_i32({s.acc.data(), t, op.out_ch, p.oh, p.ow, &p.rq, q.variant, next});
      cur = next;
      ++i;  // the pool op is done
      continue;
    }
    g.c_u8 = next;
    g.rq = &p.rq;
    g.variant = q.variant;
    k.qgemm_u8s8(g);
    cur = next;
  }
}

void Engine::run(const Tensor& x, Tensor& logits) {
  Impl& im = *impl_;
  // Checked without building shapes: at batch 1 an allocation is a noticeable part of the call.
  const Shape& in = im.q.input_shape;
  if (x.rank() != 4 || x.dim(1) != in[0] || x.dim(2) != in[1] || x.dim(3) != in[2]) {
    Shape want = in;
    want.insert(want.begin(), x.rank() ? x.dim(0) : 0);
    throw Error("engine input must be " + shape_str(want) + ", got " + shape_str(x.shape()));
  }
  const Prepared& last = im.ops.back();
  const int N = x.dim(0), classes = static_cast<int>(last.out_size());
  if (logits.rank() != 2 || logits.dim(0) != N || logits.dim(1) != classes) logits.resize({N, classes});
  const int64_t in_size = shape_numel(im.q.input_shape);
  const int tiles = (N + tile - 1) / tile;
  const int nthreads = std::max(1, std::min(threads(), tiles));
  if (static_cast<int>(im.scratch.size()) < nthreads) im.scratch.resize(static_cast<size_t>(nthreads));
  run_threads(nthreads, [&](int th, int nth) {
    Scratch& s = im.scratch[static_cast<size_t>(th)];
    Slice sl = thread_slice(tiles, th, nth);
    for (int tt = sl.begin; tt < sl.end; ++tt) {
      int n0 = tt * tile, t = std::min(tile, N - n0);
      run_tile(im, s, x.data() + n0 * in_size, t, logits.data() + int64_t{n0} * classes);
    }
  });
}

std::vector<std::vector<uint8_t>> Engine::trace(const Tensor& x) {
  std::vector<std::vector<uint8_t>> out(impl_->ops.size());
  Scratch s;
  const int64_t per = shape_numel(impl_->q.input_shape);
  std::vector<float> logits(static_cast<size_t>(impl_->ops.back().out_size()));
  for (int n = 0; n < x.dim(0); ++n) run_tile(*impl_, s, x.data() + n * per, 1, logits.data(), &out);
  return out;
}

double engine_accuracy(Engine& e, const Tensor& images, const std::vector<uint8_t>& labels, int batch) {
  const int N = images.dim(0);
  if (N == 0) return 0.0;
  const int64_t per = images.numel() / N;
  Shape bs = images.shape();
  Tensor x, logits;
  int correct = 0;
  for (int b = 0; b < N; b += batch) {
    int t = std::min(batch, N - b);
    bs[0] = t;
    x.resize(bs);
    std::copy_n(images.data() + b * per, t * per, x.data());
    e.run(x, logits);
    const int C = logits.dim(1);
    for (int i = 0; i < t; ++i) {
      const float* row = logits.data() + int64_t{i} * C;
      correct += std::max_element(row, row + C) - row == labels[size_t(b + i)];
    }
  }
  return static_cast<double>(correct) / N;
}

// ---- the float simulation ----

void simulate(const QModel& q, const Tensor& x, Tensor& logits, int stop_at) {
  Tensor cur(x.shape()), next;
  for (int64_t i = 0; i < x.numel(); ++i) cur[i] = fake_quantize(x[i], q.input, q.rounding);
  int last_weighted = -1;
  for (size_t i = 0; i < q.ops.size(); ++i)
    if (q.ops[i].weighted()) last_weighted = static_cast<int>(i);
  for (size_t i = 0; i < q.ops.size(); ++i) {
    const QOp& op = q.ops[i];
    std::unique_ptr<Layer> layer;
    switch (op.kind) {
      case QOpKind::conv: layer = std::make_unique<Conv2d>(op.in_ch, op.out_ch, op.kernel, op.stride, op.pad, !op.bias.empty()); break;
      case QOpKind::linear: layer = std::make_unique<Linear>(op.in_ch, op.out_ch, !op.bias.empty()); break;
      case QOpKind::maxpool: layer = std::make_unique<Pool2d>(PoolKind::max, op.kernel, op.stride); break;
      case QOpKind::avgpool: layer = std::make_unique<Pool2d>(PoolKind::avg, op.kernel, op.stride); break;
      case QOpKind::flatten: layer = std::make_unique<Flatten>(); break;
    }
    if (op.weighted()) {
      auto params = layer->params();
      const int K = op.k();
      for (int c = 0; c < op.out_ch; ++c) {
        for (int j = 0; j < K; ++j)
          (*params[0].value)[int64_t{c} * K + j] = static_cast<float>(op.weight[size_t(c) * K + j]) * op.w_scale[size_t(c)];
        if (!op.bias.empty())
          (*params[1].value)[c] = static_cast<float>(op.bias[size_t(c)]) * op.w_scale[size_t(c)] * op.in.scale;
      }
    }
    next.resize(layer->output_shape(cur.shape()));
    layer->forward(cur, next);
    if (static_cast<int>(i) == stop_at) {
      logits = std::move(next);
      return;
    }
    if (op.weighted() && static_cast<int>(i) != last_weighted) {
      QParams clampq = op.out;
      for (int64_t j = 0; j < next.numel(); ++j) {
        int32_t qv = quantize_value(next[j], op.out, q.rounding);
        if (op.relu) qv = std::max(qv, op.out.zero_point);
        next[j] = dequantize_value(qv, clampq);
      }
    } else if (op.kind == QOpKind::avgpool) {  // the engine rounds the average back to the grid
      for (int64_t j = 0; j < next.numel(); ++j) next[j] = fake_quantize(next[j], op.in, q.rounding);
    }
    std::swap(cur, next);
  }
  logits = cur;
}

}  // namespace lowbit
