// The engine against a naive integer interpreter of the same QModel (plain loops over the DESIGN.md
// section 3 rules, sharing only requantize_ref), on every ISA and requantization variant, random
// models over edge shapes; file round trip; the float simulation stays close; bad files rejected.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "kernels/dispatch.h"
#include "lowbit/engine.h"
#include "lowbit/io.h"
#include "test_util.h"

namespace lowbit {
namespace {

QParams act(float scale, int zp, int bits) {
  QParams p;
  p.scale = scale, p.zero_point = zp, p.bits = bits, p.scheme = Scheme::Affine;
  return p;
}

QOp weighted(QOpKind kind, const std::string& name, int in_ch, int out_ch, int kernel, int stride, int pad, bool relu,
             bool bias, int wbits, Rng& rng, const QParams& in, const QParams& out) {
  QOp op;
  op.kind = kind, op.name = name, op.in_ch = in_ch, op.out_ch = out_ch, op.kernel = kernel, op.stride = stride;
  op.pad = pad, op.relu = relu, op.wbits = wbits, op.in = in, op.out = out, op.per_channel = true;
  const int K = op.k(), lim = (1 << (wbits - 1));
  for (int i = 0; i < out_ch * K; ++i) op.weight.push_back(static_cast<int8_t>(static_cast<int>(rng.below(2 * lim)) - lim));
  for (int c = 0; c < out_ch; ++c) {
    op.w_scale.push_back(0.002f + 0.02f * static_cast<float>(rng.uniform()));
    if (bias) op.bias.push_back(static_cast<int32_t>(rng.below(20001)) - 10000);
  }
  compute_requant(op);
  return op;
}

// conv (c0 -> c1, k1, stride, pad) [+ maxpool or avgpool] -> flatten -> linear -> linear (final).
QModel random_model(Rng& rng, int c0, int hw, int c1, int k1, int stride, int pad, QOpKind pool, int abits,
                    RequantVariant v) {
  QModel q;
  q.architecture = "test";
  q.input_shape = {c0, hw, hw};
  q.input = act(2.0f / 255, static_cast<int>(rng.below(9)) - 4, abits);
  q.variant = v;
  q.rounding = (v == RequantVariant::fixedpoint_floor || v == RequantVariant::float_floor || v == RequantVariant::divide_floor)
                   ? Rounding::Floor : Rounding::Nearest;
  QParams a1 = act(0.02f, -(1 << (abits - 1)) + 3, abits), a2 = act(0.05f, 1, abits), a3 = act(0.07f, 0, abits);
  q.ops.push_back(weighted(QOpKind::conv, "conv", c0, c1, k1, stride, pad, true, true, 8, rng, q.input, a1));
  int oh = (hw + 2 * pad - k1) / stride + 1;
  if (pool != QOpKind::flatten && oh >= 2) {
    QOp p;
    p.kind = pool, p.name = "pool", p.kernel = 2, p.stride = 2;
    q.ops.push_back(p);
    oh /= 2;
  }
  QOp f;
  f.kind = QOpKind::flatten, f.name = "flatten";
  q.ops.push_back(f);
  q.ops.push_back(weighted(QOpKind::linear, "fc1", c1 * oh * oh, 7, 1, 1, 0, false, false, 4, rng, a1, a2));
  q.ops.push_back(weighted(QOpKind::linear, "fc2", 7, 5, 1, 1, 0, false, true, 8, rng, a2, a3));
  return q;
}

// The naive interpreter: signed q values, exact int64 sums, requantize_ref for each output.
std::vector<double> naive_logits(const QModel& q, const float* x) {
  std::vector<int32_t> cur;
  const int64_t in_n = shape_numel(q.input_shape);
  for (int64_t i = 0; i < in_n; ++i) cur.push_back(quantize_value(x[i], q.input, q.rounding));
  int c = q.input_shape[0], h = q.input_shape[1], w = q.input_shape[2];
  for (size_t oi = 0; oi < q.ops.size(); ++oi) {
    const QOp& op = q.ops[oi];
    const bool final = oi + 1 == q.ops.size();
    std::vector<int32_t> next;
    if (op.kind == QOpKind::flatten) continue;
    if (op.kind == QOpKind::maxpool || op.kind == QOpKind::avgpool) {
      for (int ch = 0; ch < c; ++ch)
        for (int y = 0; y < h / 2; ++y)
          for (int xx = 0; xx < w / 2; ++xx) {
            int32_t v[4] = {cur[size_t((ch * h + 2 * y) * w + 2 * xx)], cur[size_t((ch * h + 2 * y) * w + 2 * xx + 1)],
                            cur[size_t((ch * h + 2 * y + 1) * w + 2 * xx)], cur[size_t((ch * h + 2 * y + 1) * w + 2 * xx + 1)]};
            if (op.kind == QOpKind::maxpool) next.push_back(*std::max_element(v, v + 4));
            else next.push_back(static_cast<int32_t>(std::lround((v[0] + v[1] + v[2] + v[3]) / 4.0)));  // half away from 0
          }
      cur = next, h /= 2, w /= 2;
      continue;
    }
    int oh = 1, ow = 1, K = op.k();
    if (op.kind == QOpKind::conv) oh = (h + 2 * op.pad - op.kernel) / op.stride + 1, ow = (w + 2 * op.pad - op.kernel) / op.stride + 1;
    RequantParams rq;
    rq.q31 = op.q31.data(), rq.shift = op.shift.data(), rq.scale = op.m.data(), rq.divisor = op.divisor.data();
    rq.z_out = op.out.zero_point + 128;
    rq.lo = (op.relu ? op.out.zero_point : op.out.qmin()) + 128, rq.hi = op.out.qmax() + 128;
    std::vector<double> logits;
    for (int o = 0; o < op.out_ch; ++o)
      for (int y = 0; y < oh; ++y)
        for (int xx = 0; xx < ow; ++xx) {
          int64_t acc = op.bias.empty() ? 0 : op.bias[size_t(o)];
          for (int kk = 0; kk < K; ++kk) {
            int32_t xv;
            if (op.kind == QOpKind::linear) {
              xv = cur[size_t(kk)];
            } else {
              int ci = kk / (op.kernel * op.kernel), ky = kk / op.kernel % op.kernel, kx = kk % op.kernel;
              int iy = y * op.stride - op.pad + ky, ix = xx * op.stride - op.pad + kx;
              xv = (iy < 0 || iy >= h || ix < 0 || ix >= w) ? op.in.zero_point : cur[size_t((ci * h + iy) * w + ix)];
            }
            acc += int64_t{op.weight[size_t(o) * K + kk]} * (xv - op.in.zero_point);
          }
          if (final) logits.push_back(static_cast<float>(acc) * (op.w_scale[size_t(o)] * op.in.scale));  // as float, like the engine
          else next.push_back(requantize_ref(static_cast<int32_t>(acc), rq, q.variant, o) - 128);
        }
    if (final) return logits;
    cur = next, c = op.out_ch, h = oh, w = ow;
  }
  return {};
}

TEST(Engine, EveryIsaMatchesNaiveIntegerInterpreter) {
  Rng rng(7);
  const RequantVariant variants[] = {RequantVariant::fixedpoint, RequantVariant::fixedpoint_floor, RequantVariant::float_nearest,
                                     RequantVariant::float_floor, RequantVariant::divide_nearest, RequantVariant::divide_floor};
  int cases = 0;
  for (int c1 : {1, 6, 16, 17})
    for (int k1 : {1, 3, 5})
      for (int stride : {1, 2})
        for (QOpKind pool : {QOpKind::maxpool, QOpKind::avgpool, QOpKind::flatten}) {
          RequantVariant v = variants[cases % 6];
          int abits = cases % 3 == 0 ? 4 : 8;
          int c0 = 1 + cases % 3, hw = 6 + cases % 5, pad = cases % 3;
          QModel q = random_model(rng, c0, hw, c1, k1, stride, pad, pool, abits, v);
          ++cases;
          for (int batch : {1, 3, 19}) {
            Tensor x(Shape{batch, c0, hw, hw});
            for (int64_t i = 0; i < x.numel(); ++i) x[i] = rng.uniform(-1.1f, 1.1f);
            for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512}) {
              const KernelTable* t = kernels_for(isa);
              if (!t) continue;
              Engine e(q, t);
              e.tile = 4;  // several tiles, a ragged last one
              Tensor logits;
              e.run(x, logits);
              for (int n = 0; n < batch; ++n) {
                std::vector<double> want = naive_logits(q, x.data() + n * x.numel() / batch);
                for (int j = 0; j < 5; ++j)
                  ASSERT_EQ(static_cast<float>(want[size_t(j)]), logits[int64_t{n} * 5 + j])
                      << isa_name(isa) << " variant " << requant_variant_name(v) << " c1=" << c1 << " k=" << k1
                      << " stride=" << stride << " pool=" << qop_kind_name(pool) << " batch=" << batch << " sample " << n
                      << " class " << j;
              }
            }
          }
        }
}

// Shapes that select the kernels without im2col (where the ISA has them): conv -> max pool with
// rows wide enough for the direct kernel (padded or not), and unpadded narrower ones for the
// implicit GEMM. The plan says which path ran; the logits must equal the naive interpreter's.
TEST(Engine, ConvWithoutIm2colMatchesNaiveInterpreter) {
  Rng rng(8);
  const RequantVariant variants[] = {RequantVariant::fixedpoint, RequantVariant::fixedpoint_floor, RequantVariant::float_nearest,
                                     RequantVariant::float_floor, RequantVariant::divide_nearest, RequantVariant::divide_floor};
  struct Case {
    int c0, hw, c1, k, pad;
    const char* path;
  };
  const Case cases[] = {{1, 32, 6, 5, 0, "direct conv"}, {1, 28, 6, 5, 2, "direct conv"}, {3, 21, 17, 3, 1, "direct conv"},
                        {2, 35, 5, 4, 0, "direct conv"}, {1, 20, 7, 1, 0, "direct conv"}, {6, 14, 16, 5, 0, "implicit GEMM"},
                        {3, 9, 33, 3, 0, "implicit GEMM"}, {2, 12, 8, 2, 0, "implicit GEMM"}};
  const KernelTable* avx512 = kernels_for(Isa::avx512);
  int n = 0;
  for (const Case& c : cases) {
    const RequantVariant v = variants[n % 6];
    QModel q = random_model(rng, c.c0, c.hw, c.c1, c.k, 1, c.pad, QOpKind::maxpool, n % 3 == 0 ? 4 : 8, v);
    ++n;
    for (Isa isa : {Isa::ref, Isa::avx512}) {
      const KernelTable* t = kernels_for(isa);
      if (!t) continue;
      Engine e(q, t);
      if (isa == Isa::avx512 && avx512->qconv_maxpool_u8 && avx512->qconv_i32)
        EXPECT_NE(e.plan().find(std::string("conv: ") + c.path + " + max pool"), std::string::npos) << e.plan();
      for (int batch : {1, 5}) {  // odd: a ragged last tile of 4
        Tensor x(Shape{batch, c.c0, c.hw, c.hw}), logits;
        for (int64_t i = 0; i < x.numel(); ++i) x[i] = rng.uniform(-1.1f, 1.1f);
        e.run(x, logits);
        for (int s = 0; s < batch; ++s) {
          std::vector<double> want = naive_logits(q, x.data() + s * x.numel() / batch);
          for (int j = 0; j < 5; ++j)
            ASSERT_EQ(static_cast<float>(want[size_t(j)]), logits[int64_t{s} * 5 + j])
                << isa_name(isa) << " " << e.plan() << " " << requant_variant_name(v) << " hw=" << c.hw << " batch=" << batch;
        }
      }
    }
  }
}

TEST(Engine, ThreadsDoNotChangeBits) {
  Rng rng(3);
  QModel q = random_model(rng, 1, 12, 6, 5, 1, 0, QOpKind::maxpool, 8, RequantVariant::fixedpoint);
  Tensor x(Shape{37, 1, 12, 12}), a, b;
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = rng.uniform(-1, 1);
  Engine e(q);
  set_threads(1);
  e.run(x, a);
  set_threads(2);
  e.run(x, b);
  set_threads(0);
  for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(a[i], b[i]) << i;
}

TEST(Engine, SimulationIsCloseAndFileRoundTrips) {
  Rng rng(5);
  QModel q = random_model(rng, 1, 10, 6, 3, 1, 1, QOpKind::maxpool, 8, RequantVariant::fixedpoint);
  Tensor x(Shape{16, 1, 10, 10}), sim, eng, eng2;
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = rng.uniform(-1, 1);
  simulate(q, x, sim);
  Engine e(q);
  e.run(x, eng);
  // Rounding differences of single activation steps only: the logits stay within a few output
  // steps of each other (fc2's output step is s_w * s_in, about 1e-3 here).
  for (int64_t i = 0; i < sim.numel(); ++i) EXPECT_NEAR(sim[i], eng[i], 0.05 * (1 + std::fabs(eng[i]))) << i;
  test::TempDir d;
  save_qmodel(d.file("q"), q);
  QModel r = load_qmodel(d.file("q"));
  Engine e2(r);
  e2.run(x, eng2);
  for (int64_t i = 0; i < eng.numel(); ++i) ASSERT_EQ(eng[i], eng2[i]);
}

TEST(Engine, RejectsBadFiles) {
  Rng rng(5);
  QModel q = random_model(rng, 1, 8, 4, 3, 1, 0, QOpKind::maxpool, 8, RequantVariant::fixedpoint);
  test::TempDir d;
  auto expect_rejected = [&](QModel bad, const std::string& fragment) {
    save_qmodel(d.file("bad"), bad);
    try {
      load_qmodel(d.file("bad"));
      ADD_FAILURE() << "accepted: " << fragment;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  QModel b1 = q;
  b1.ops[0].q31[1] = 5;
  expect_rejected(b1, "conv.q31[1]");
  QModel b2 = q;
  b2.ops[0].shift[0] = 40;
  expect_rejected(b2, "conv.shift[0]");
  QModel b3 = q;
  b3.ops[0].out.zero_point = 300;
  expect_rejected(b3, "zero_point");
  QModel b4 = q;
  b4.ops.back().in_ch = 99;  // shapes do not chain
  b4.ops.back().weight.resize(size_t(99) * 5);
  expect_rejected(b4, "features");
  QModel b5 = q;
  b5.ops[0].weight[0] = 100, b5.ops[0].wbits = 4;
  expect_rejected(b5, "does not fit 4 bits");
  // An FP32 file where a quantized one is needed: a hint.
  SafetensorsFile f;
  f.meta = {{"kind", "fp32"}};
  write_safetensors(d.file("fp"), f);
  try {
    load_qmodel(d.file("fp"));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lowbit quantize"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lowbit
