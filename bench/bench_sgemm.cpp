// FP32 GEMM benchmarks on the GEMMs of LeNet-5 training and inference (per thread, batch 32 tile),
// for every ISA this CPU has. Checks against the reference before timing. GFLOP/s as a counter.
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/sgemm.h"
#include "lowbit/core.h"

namespace {

struct Shape3 {
  const char* name;
  int m, n, k;
};
// Forward GEMMs: conv1 [6 x 25] x [25 x 784], conv2 [16 x 150] x [150 x 500] (5 images of 100
// pixels), conv3 [120 x 400] x [400 x 256], fc1 as y^T: [84 x 120] x [120 x 256].
const Shape3 kShapes[] = {{"conv1", 6, 784, 25}, {"conv2", 16, 500, 150}, {"conv3", 120, 256, 400}, {"fc1", 84, 256, 120}};

// Times fn (which writes out) and reports GFLOP/s for `macs` multiply-adds per call.
template <class Fn>
void time_gflops(benchmark::State& state, Fn fn, const float* out, double macs) {
  for (auto _ : state) {
    fn();
    benchmark::DoNotOptimize(out);
  }
  state.counters["GFLOPS"] = benchmark::Counter(2.0 * macs * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

void BM_sgemm(benchmark::State& state, lowbit::Isa isa, Shape3 s) {
  const lowbit::KernelTable* t = lowbit::kernels_for(isa);
  if (!t) {
    state.SkipWithError("ISA not supported by this CPU");
    return;
  }
  lowbit::Rng rng(1);
  std::vector<float> a(size_t(s.m) * s.k), b(size_t(s.k) * s.n), c(size_t(s.m) * s.n), r(c.size());
  for (float& v : a) v = rng.uniform(-1, 1);
  for (float& v : b) v = rng.uniform(-1, 1);
  lowbit::SgemmArgs g{s.m, s.n, s.k, a.data(), s.k, 1, b.data(), s.n, 1, c.data(), s.n, false};
  t->sgemm(g);
  lowbit::SgemmArgs gr = g;
  gr.c = r.data();
  lowbit::sgemm_ref(gr);
  for (size_t i = 0; i < c.size(); ++i)
    if (std::fabs(c[i] - r[i]) > 1e-3f * std::sqrt(float(s.k))) {
      state.SkipWithError("result differs from the reference");
      return;
    }
  time_gflops(state, [&] { t->sgemm(g); }, c.data(), double(s.m) * s.n * s.k);
}

// C[m, n] = A[m, k] * B[n, k]^T by row pointers: training's forward of conv3 (16 images x 120
// weight rows of 400) and fc1 (16 x 84 of 120), where the weights change every step and are
// read in place (sgemm_nt) rather than transposed.
const Shape3 kNtShapes[] = {{"conv3_fwd", 16, 120, 400}, {"fc1_fwd", 16, 84, 120}};

void BM_sgemm_nt(benchmark::State& state, lowbit::Isa isa, Shape3 s) {
  const lowbit::KernelTable* t = lowbit::kernels_for(isa);
  if (!t) {
    state.SkipWithError("ISA not supported by this CPU");
    return;
  }
  lowbit::Rng rng(3);
  std::vector<float> a(size_t(s.m) * s.k + 16), b(size_t(s.n) * s.k + 16), c(size_t(s.m) * s.n), r(c.size());
  for (float& v : a) v = rng.uniform(-1, 1);
  for (float& v : b) v = rng.uniform(-1, 1);
  std::vector<const float*> ar, br;
  for (int i = 0; i < s.m; ++i) ar.push_back(a.data() + size_t(i) * s.k);
  for (int j = 0; j < s.n; ++j) br.push_back(b.data() + size_t(j) * s.k);
  lowbit::SgemmNtArgs g{s.m, s.n, s.k, ar.data(), br.data(), c.data(), s.n, false};
  t->sgemm_nt(g);
  lowbit::SgemmNtArgs gr = g;
  gr.c = r.data();
  lowbit::sgemm_nt_ref(gr);
  for (size_t i = 0; i < c.size(); ++i)
    if (std::fabs(c[i] - r[i]) > 1e-3f * std::sqrt(float(s.k))) {
      state.SkipWithError("result differs from the reference");
      return;
    }
  time_gflops(state, [&] { t->sgemm_nt(g); }, c.data(), double(s.m) * s.n * s.k);
}

// LeNet's conv2 (6 x 14 x 14 -> 16 x 10 x 10, 5x5) on 16 images in lanes: forward, dW and dX
// (pass 0, 1, 2), each 240,000 multiply-adds per image; compare GFLOP/s with sgemm/*/conv2 (the
// same products after an im2col these kernels do not need). Checked against the reference first.
// conv1 (1 x 32 x 32 -> 6 x 28 x 28): rows in strips of 10 + 9 + 9, dW in blocks of 3 channels.
void BM_conv_lanes(benchmark::State& state, lowbit::Isa isa, int pass, bool conv1) {
  const lowbit::KernelTable* t = lowbit::kernels_for(isa);
  if (!t || !t->conv_lanes_fwd) {
    state.SkipWithError("no lane kernels for this ISA");
    return;
  }
  const int c = conv1 ? 1 : 6, h = conv1 ? 32 : 14, w = h, oc = conv1 ? 6 : 16, k = 5, oh = h - 4, ow = oh;
  lowbit::Rng rng(2);
  std::vector<float> wt(size_t(oc) * c * k * k), x(size_t(c) * h * w * lowbit::kLanes), y(size_t(oc) * oh * ow * lowbit::kLanes);
  std::vector<float> dw(wt.size()), x2 = x, y2 = y, dw2 = dw;
  for (auto* v : {&wt, &x, &y})
    for (float& e : *v) e = rng.uniform(-1, 1);
  x2 = x, y2 = y;
  using Fn = lowbit::ConvLanesFn;
  const Fn fast = pass == 0 ? t->conv_lanes_fwd : pass == 1 ? t->conv_lanes_dw : t->conv_lanes_dx;
  const Fn ref = pass == 0 ? lowbit::conv_lanes_fwd_ref : pass == 1 ? lowbit::conv_lanes_dw_ref : lowbit::conv_lanes_dx_ref;
  fast({c, h, w, oc, k, wt.data(), x.data(), y.data(), dw.data()});
  ref({c, h, w, oc, k, wt.data(), x2.data(), y2.data(), dw2.data()});
  const std::vector<float>& got = pass == 0 ? y : pass == 1 ? dw : x;
  const std::vector<float>& want = pass == 0 ? y2 : pass == 1 ? dw2 : x2;
  for (size_t i = 0; i < got.size(); ++i)
    if (std::fabs(got[i] - want[i]) > 1e-3f) {
      state.SkipWithError("result differs from the reference");
      return;
    }
  time_gflops(state, [&] { fast({c, h, w, oc, k, wt.data(), x.data(), y.data(), dw.data()}); }, x.data(),
              double(oc) * c * k * k * oh * ow * lowbit::kLanes);
}

// LeNet's conv1 weight gradient (1 x 32 x 32 -> 6 x 28 x 28, 5x5) over 16 images: 117,600
// multiply-adds per image (conv5_dw_f32).
void BM_conv5_dw(benchmark::State& state, lowbit::Isa isa) {
  const lowbit::KernelTable* t = lowbit::kernels_for(isa);
  if (!t || !t->conv5_dw_f32) {
    state.SkipWithError("no conv5_dw kernel for this ISA");
    return;
  }
  const int n = 16, c = 1, h = 32, w = 32, oc = 6, oh = 28, ow = 28;
  lowbit::Rng rng(4);
  std::vector<float> x(size_t(n) * c * h * w + 16), dy(size_t(n) * oc * oh * ow + 16), dw(size_t(oc) * c * 25, 0.0f);
  std::vector<float> want = dw;
  for (auto* v : {&x, &dy})
    for (float& e : *v) e = rng.uniform(-1, 1);
  const lowbit::ConvDwArgs a{n, c, h, w, oc, x.data(), int64_t{c} * h * w, dy.data(), int64_t{oc} * oh * ow, dw.data()};
  t->conv5_dw_f32(a);
  lowbit::ConvDwArgs r = a;
  r.dw = want.data();
  lowbit::conv5_dw_f32_ref(r);
  for (size_t i = 0; i < dw.size(); ++i)
    if (std::fabs(dw[i] - want[i]) > 1e-2f) {
      state.SkipWithError("result differs from the reference");
      return;
    }
  time_gflops(state, [&] { t->conv5_dw_f32(a); }, dw.data(), double(oc) * c * 25 * oh * ow * n);
}

int reg = [] {
  for (lowbit::Isa isa : {lowbit::Isa::ref, lowbit::Isa::avx2, lowbit::Isa::avx512})
    for (const Shape3& s : kShapes)
      benchmark::RegisterBenchmark((std::string("sgemm/") + lowbit::isa_name(isa) + "/" + s.name).c_str(), BM_sgemm, isa, s);
  for (lowbit::Isa isa : {lowbit::Isa::ref, lowbit::Isa::avx2, lowbit::Isa::avx512})
    for (const Shape3& s : kNtShapes)
      benchmark::RegisterBenchmark((std::string("sgemm_nt/") + lowbit::isa_name(isa) + "/" + s.name).c_str(), BM_sgemm_nt, isa, s);
  benchmark::RegisterBenchmark("conv5_dw/avx512/conv1", BM_conv5_dw, lowbit::Isa::avx512);
  for (bool conv1 : {false, true})
    for (int pass = 0; pass < (conv1 ? 2 : 3); ++pass)
      benchmark::RegisterBenchmark((std::string(conv1 ? "conv1" : "conv2") + "_lanes/avx512/" +
                                    (pass == 0 ? "fwd" : pass == 1 ? "dw" : "dx")).c_str(),
                                   BM_conv_lanes, lowbit::Isa::avx512, pass, conv1);
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
