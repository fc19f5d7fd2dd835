// Integer kernels on the real int8 LeNet-5 shapes, one thread, every ISA this CPU has: the GEMMs
// (conv1 and conv2 over 8 images written straight to NCHW, conv3 and the linear layers at batch
// 256), im2col, max pooling, and the kernels chained as a whole forward pass at batch 256.
// Each benchmark checks its output against the reference before timing. Counters: GOPS
// (2 * M * K * N per call, K unpadded), peak (fraction of one core's peak from PERFORMANCE.md:
// VNNI 1,040 GOPS, AVX2 258), images/s.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/qkernels.h"
#include "lowbit/core.h"

namespace {

using lowbit::Isa;

double peak_gops(Isa isa) { return isa == Isa::avx512 ? 1040.0 : 258.0; }

// A GEMM layer of the engine: weights, bias_eff, requantization parameters, packed input.
struct QLayer {
  int m, k, n;
  int cols_per_image;  // 0: plain [M][N]
  std::vector<int8_t> w, wt;  // wt: W^T for small n (QGemmArgs::wt), as the engine passes it
  std::vector<int32_t> bias, q31, shift;
  std::vector<uint8_t> x;
  lowbit::RequantParams rq;

  QLayer(int m_, int k_, int n_, int per_image, lowbit::Rng& rng)
      : m(m_), k(k_), n(n_), cols_per_image(per_image) {
    const int k4 = lowbit::qk4(k);
    w.assign(static_cast<size_t>(m) * k4, 0);
    for (int i = 0; i < m; ++i)
      for (int p = 0; p < k; ++p) w[static_cast<size_t>(i * k4 + p)] = static_cast<int8_t>(static_cast<int>(rng.below(256)) - 128);
    wt.resize(static_cast<size_t>(k4) * ((m + 15) & ~15));
    lowbit::qpack_weights_t_s8(w.data(), m, k, k4, wt.data());
    bias.resize(m);
    lowbit::qbias_eff(w.data(), m, k, k4, nullptr, 128, bias.data(), "bench");
    q31.resize(m);
    shift.resize(m);
    for (int i = 0; i < m; ++i) {
      const lowbit::QuantizedMultiplier qm = lowbit::quantize_multiplier(20.0 / (74.0 * 128.0 * std::sqrt(double(k))) * (1 + 0.1 * i));
      q31[i] = qm.q31;
      shift[i] = qm.shift;
    }
    rq.q31 = q31.data();
    rq.shift = shift.data();
    rq.z_out = 128;
    rq.lo = 128;  // fused ReLU
    x.resize(static_cast<size_t>(k4) * n);
    for (auto& b : x) b = static_cast<uint8_t>(rng.below(256));
  }

  lowbit::QGemmArgs args(uint8_t* c_u8, int32_t* c_i32, const uint8_t* packed = nullptr) const {
    lowbit::QGemmArgs a;
    a.m = m;
    a.n = n;
    a.k = k;
    a.w = w.data();
    a.ldw = lowbit::qk4(k);
    a.wt = wt.data();
    a.x = packed ? packed : x.data();
    a.bias = bias.data();
    if (cols_per_image > 0) {  // NCHW of n / cols_per_image images
      a.ldc = cols_per_image;
      a.cols_per_image = cols_per_image;
      a.ldc_image = int64_t{m} * cols_per_image;
    } else if (c_i32) {  // logits, batch-major [N][M]
      a.ldc = 1;
      a.cols_per_image = 1;
      a.ldc_image = m;
    } else {
      a.ldc = n;
    }
    a.c_u8 = c_u8;
    a.c_i32 = c_i32;
    a.rq = &rq;
    return a;
  }
};

struct GemmShape {
  const char* name;
  int m, k, n, per_image;
  bool int32_out;
};
// conv1 / conv2: 8 images as one GEMM (N = 8 * OH * OW); conv3 / fc1 / fc2: batch 256, and
// batch 1 (one output pixel per image: the engine's small-n path with channels in the lanes).
const GemmShape kGemms[] = {{"conv1", 6, 25, 8 * 784, 784, false},   {"conv2", 16, 150, 8 * 100, 100, false},
                            {"conv3", 120, 400, 256, 0, false},      {"fc1", 84, 120, 256, 0, false},
                            {"fc2", 10, 84, 256, 0, true},           {"conv3_batch1", 120, 400, 1, 1, false},
                            {"fc1_batch1", 84, 120, 1, 1, false},    {"fc2_batch1", 10, 84, 1, 1, true}};

void BM_qgemm(benchmark::State& state, Isa isa, GemmShape s) {
  const lowbit::KernelTable* t = lowbit::kernels_for(isa);
  if (!t) {
    state.SkipWithError("ISA not supported by this CPU");
    return;
  }
  lowbit::Rng rng(1);
  QLayer layer(s.m, s.k, s.n, s.per_image, rng);
  std::vector<uint8_t> c(static_cast<size_t>(s.m) * s.n), cr(c.size());
  std::vector<int32_t> ci(c.size()), cir(c.size());
  const lowbit::QGemmArgs a = layer.args(c.data(), s.int32_out ? ci.data() : nullptr);
  t->qgemm_u8s8(a);
  lowbit::qgemm_u8s8_ref(layer.args(cr.data(), s.int32_out ? cir.data() : nullptr));
  if (c != cr || ci != cir) {
    state.SkipWithError("result differs from the reference");
    return;
  }
  for (auto _ : state) {
    t->qgemm_u8s8(a);
    benchmark::ClobberMemory();
  }
  const double ops = 2.0 * s.m * s.k * s.n * double(state.iterations());
  state.counters["GOPS"] = benchmark::Counter(ops / 1e9, benchmark::Counter::kIsRate);
  state.counters["peak"] = benchmark::Counter(ops / 1e9 / peak_gops(isa), benchmark::Counter::kIsRate);
}

struct ConvInput {
  const char* name;
  int nb, c, h, kk;
};
const ConvInput kIm2col[] = {{"conv1", 8, 1, 32, 5}, {"conv2", 8, 6, 14, 5}};

void BM_qim2col(benchmark::State& state, Isa isa, ConvInput s) {
  const lowbit::KernelTable* t = lowbit::kernels_for(isa);
  if (!t) {
    state.SkipWithError("ISA not supported by this CPU");
    return;
  }
  lowbit::Rng rng(2);
  std::vector<uint8_t> in(static_cast<size_t>(s.nb) * s.c * s.h * s.h);
  for (auto& b : in) b = static_cast<uint8_t>(rng.below(256));
  const int o = s.h - s.kk + 1;
  const size_t packed = static_cast<size_t>(lowbit::qk4(s.c * s.kk * s.kk)) * s.nb * o * o;
  std::vector<uint8_t> out(packed), ref(packed);
  lowbit::QIm2colArgs a;
  a.in = in.data();
  a.nb = s.nb;
  a.c = s.c;
  a.h = a.w = s.h;
  a.in_bstride = int64_t{s.c} * s.h * s.h;
  a.in_cstride = int64_t{s.h} * s.h;
  a.kh = a.kw = s.kk;
  a.out = out.data();
  t->qim2col_u8(a);
  lowbit::QIm2colArgs ar = a;
  ar.out = ref.data();
  lowbit::qim2col_u8_ref(ar);
  if (out != ref) {
    state.SkipWithError("result differs from the reference");
    return;
  }
  for (auto _ : state) {
    t->qim2col_u8(a);
    benchmark::ClobberMemory();
  }
  state.counters["images/s"] = benchmark::Counter(double(s.nb) * double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["GB/s_out"] = benchmark::Counter(double(packed) * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

struct PoolShape {
  const char* name;
  int planes, h;
};
const PoolShape kPools[] = {{"pool1", 8 * 6, 28}, {"pool2", 8 * 16, 10}};

void BM_qmaxpool(benchmark::State& state, Isa isa, PoolShape s) {
  const lowbit::KernelTable* t = lowbit::kernels_for(isa);
  if (!t) {
    state.SkipWithError("ISA not supported by this CPU");
    return;
  }
  lowbit::Rng rng(3);
  std::vector<uint8_t> in(static_cast<size_t>(s.planes) * s.h * s.h);
  for (auto& b : in) b = static_cast<uint8_t>(rng.below(256));
  std::vector<uint8_t> out(in.size() / 4), ref(out.size());
  t->qmaxpool2x2_u8(in.data(), s.planes, s.h, s.h, out.data());
  lowbit::qmaxpool2x2_u8_ref(in.data(), s.planes, s.h, s.h, ref.data());
  if (out != ref) {
    state.SkipWithError("result differs from the reference");
    return;
  }
  for (auto _ : state) {
    t->qmaxpool2x2_u8(in.data(), s.planes, s.h, s.h, out.data());
    benchmark::ClobberMemory();
  }
  state.counters["images/s"] = benchmark::Counter(8.0 * double(state.iterations()), benchmark::Counter::kIsRate);
}

// W[m][k] without the GEMM's padding to qk4(k) columns, as the conv kernels' references read it.
std::vector<int8_t> unpadded_weights(const QLayer& l) {
  std::vector<int8_t> w(size_t(l.m) * l.k);
  for (int i = 0; i < l.m; ++i)
    for (int p = 0; p < l.k; ++p) w[size_t(i) * l.k + p] = l.w[size_t(i) * lowbit::qk4(l.k) + p];
  return w;
}

// Runs `run` once and skips the benchmark unless out == ref, then times it; images/s counter.
template <class Run, class V>
void time_checked(benchmark::State& state, Run run, const V& out, const V& ref, int images) {
  run();
  if (out != ref) {
    state.SkipWithError("result differs from the reference");
    return;
  }
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  state.counters["images/s"] = benchmark::Counter(double(images) * double(state.iterations()), benchmark::Counter::kIsRate);
}

// LeNet's conv1 -> max pool over 8 images, both ways the engine can run it: im2col + GEMM to
// int32 + pooled requantization, or the direct kernel (qconv_maxpool_u8, where the ISA has it).
void BM_conv1_pool(benchmark::State& state, Isa isa, bool direct) {
  const lowbit::KernelTable* t = lowbit::kernels_for(isa);
  if (!t || (direct && !t->qconv_maxpool_u8)) {
    state.SkipWithError(t ? "no direct kernel for this ISA" : "ISA not supported by this CPU");
    return;
  }
  constexpr int kImages = 8;
  lowbit::Rng rng(5);
  QLayer conv1{6, 25, kImages * 784, 784, rng};
  std::vector<uint8_t> in(size_t(kImages) * 1024);
  for (auto& b : in) b = static_cast<uint8_t>(rng.below(256));
  const std::vector<int8_t> w = unpadded_weights(conv1);
  std::vector<int8_t> wq;
  wq.resize(size_t(lowbit::qpack_weights_conv_s8(w.data(), 6, 1, 5, 5, 25, nullptr)));
  lowbit::qpack_weights_conv_s8(w.data(), 6, 1, 5, 5, 25, wq.data());
  std::vector<uint8_t> packed(size_t(28) * kImages * 784), out(size_t(kImages) * 6 * 196), ref(out.size());
  std::vector<int32_t> acc(size_t(kImages) * 6 * 784);
  lowbit::QConvPoolArgs ca;
  ca.in = in.data(), ca.nb = kImages, ca.h = ca.w = 32, ca.in_bstride = 1024, ca.kh = ca.kw = 5;
  ca.m = 6, ca.weight = w.data(), ca.ldw = 25, ca.weight_packed = wq.data(), ca.bias = conv1.bias.data();
  ca.rq = &conv1.rq, ca.out = ref.data();
  lowbit::qconv_maxpool_u8_ref(ca);
  ca.out = out.data();
  auto run = [&] {
    if (direct) {
      t->qconv_maxpool_u8(ca);
      return;
    }
    lowbit::QIm2colArgs im;
    im.in = in.data(), im.nb = kImages, im.h = im.w = 32, im.in_bstride = im.in_cstride = 1024, im.kh = im.kw = 5;
    im.out = packed.data();
    t->qim2col_u8(im);
    t->qgemm_u8s8(conv1.args(nullptr, acc.data(), packed.data()));
    t->qmaxpool2x2_requant_i32({acc.data(), kImages, 6, 28, 28, &conv1.rq, lowbit::RequantVariant::fixedpoint, out.data()});
  };
  time_checked(state, run, out, ref, kImages);
}

// LeNet's conv2 (6 x 14 x 14 -> 16 x 10 x 10) to int32 over 8 images: im2col + GEMM, or the
// implicit GEMM (qconv_i32, where the ISA has it). GOPS as for the GEMMs.
void BM_conv2_i32(benchmark::State& state, Isa isa, bool implicit) {
  const lowbit::KernelTable* t = lowbit::kernels_for(isa);
  if (!t || (implicit && !t->qconv_i32)) {
    state.SkipWithError(t ? "no implicit GEMM for this ISA" : "ISA not supported by this CPU");
    return;
  }
  constexpr int kImages = 8;
  lowbit::Rng rng(6);
  QLayer conv2{16, 150, kImages * 100, 100, rng};
  std::vector<uint8_t> in(size_t(kImages) * 6 * 196 + lowbit::kQConvSlack);
  for (auto& b : in) b = static_cast<uint8_t>(rng.below(256));
  const std::vector<int8_t> w = unpadded_weights(conv2);
  std::vector<uint8_t> packed(size_t(152) * kImages * 100);
  std::vector<int32_t> out(size_t(kImages) * 16 * 100), ref(out.size());
  lowbit::QConvI32Args ca;
  ca.in = in.data(), ca.nb = kImages, ca.c = 6, ca.h = ca.w = 14, ca.in_bstride = 6 * 196, ca.kh = ca.kw = 5;
  ca.m = 16, ca.weight = w.data(), ca.ldw = 150, ca.weight_t = conv2.wt.data(), ca.bias = conv2.bias.data();
  ca.out = ref.data();
  lowbit::qconv_i32_ref(ca);
  ca.out = out.data();
  auto run = [&] {
    if (implicit) {
      t->qconv_i32(ca);
      return;
    }
    lowbit::QIm2colArgs im;
    im.in = in.data(), im.nb = kImages, im.c = 6, im.h = im.w = 14, im.in_bstride = 6 * 196, im.in_cstride = 196;
    im.kh = im.kw = 5, im.out = packed.data();
    t->qim2col_u8(im);
    t->qgemm_u8s8(conv2.args(nullptr, out.data(), packed.data()));
  };
  time_checked(state, run, out, ref, kImages);
  const double ops = 2.0 * 16 * 150 * 100 * kImages;
  state.counters["GOPS"] = benchmark::Counter(ops * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

// The whole int8 LeNet-5 forward pass from kernels alone, batch 256 in tiles of 8 images (conv1,
// conv2 and the pools per tile, so activations stay in L1/L2), then conv3 / fc1 / fc2 as GEMMs
// on the whole batch. Weights random; one thread. The result is compared with the same chain
// run on the reference kernels.
struct LeNetChain {
  static constexpr int kBatch = 256, kTile = 8;
  lowbit::Rng rng{4};
  std::vector<float> image = std::vector<float>(size_t(kBatch) * 32 * 32);
  QLayer conv1{6, 25, kTile * 784, 784, rng}, conv2{16, 150, kTile * 100, 100, rng};
  QLayer conv3{120, 400, kBatch, 0, rng}, fc1{84, 120, kBatch, 0, rng}, fc2{10, 84, kBatch, 0, rng};
  std::vector<uint8_t> in_u8 = std::vector<uint8_t>(size_t(kBatch) * 1024);
  std::vector<uint8_t> packed = std::vector<uint8_t>(size_t(152) * kTile * 100 + size_t(28) * kTile * 784);
  std::vector<uint8_t> c1 = std::vector<uint8_t>(size_t(kTile) * 6 * 784), p1 = std::vector<uint8_t>(size_t(kTile) * 6 * 196);
  std::vector<uint8_t> c2 = std::vector<uint8_t>(size_t(kTile) * 16 * 100);
  std::vector<uint8_t> p2 = std::vector<uint8_t>(size_t(kBatch) * 400);  // [batch][16*5*5]
  std::vector<uint8_t> x3 = std::vector<uint8_t>(size_t(400) * kBatch), a3 = std::vector<uint8_t>(size_t(120) * kBatch);
  std::vector<uint8_t> x4 = std::vector<uint8_t>(size_t(120) * kBatch), a4 = std::vector<uint8_t>(size_t(84) * kBatch);
  std::vector<uint8_t> x5 = std::vector<uint8_t>(size_t(84) * kBatch);
  std::vector<int32_t> logits = std::vector<int32_t>(size_t(kBatch) * 10);

  LeNetChain() {
    for (float& v : image) v = rng.uniform(-1, 1);
  }

  void run(const lowbit::KernelTable& t) {
    lowbit::QQuantizeArgs qa;
    qa.scale = 1.0f / 127.0f;
    t.qquantize_f32_u8(image.data(), int64_t(image.size()), qa, in_u8.data());
    for (int b0 = 0; b0 < kBatch; b0 += kTile) {
      lowbit::QIm2colArgs im;
      im.in = in_u8.data() + size_t(b0) * 1024;
      im.nb = kTile;
      im.c = 1;
      im.h = im.w = 32;
      im.in_bstride = 1024;
      im.in_cstride = 1024;
      im.kh = im.kw = 5;
      im.out = packed.data();
      t.qim2col_u8(im);
      t.qgemm_u8s8(conv1.args(c1.data(), nullptr, packed.data()));
      t.qmaxpool2x2_u8(c1.data(), kTile * 6, 28, 28, p1.data());
      im.in = p1.data();
      im.c = 6;
      im.h = im.w = 14;
      im.in_bstride = 6 * 196;
      im.in_cstride = 196;
      t.qim2col_u8(im);
      t.qgemm_u8s8(conv2.args(c2.data(), nullptr, packed.data()));
      t.qmaxpool2x2_u8(c2.data(), kTile * 16, 10, 10, p2.data() + size_t(b0) * 400);
    }
    t.qpack_u8(p2.data(), 1, 400, 400, kBatch, x3.data());  // [batch][400] -> packed X[400][batch]
    t.qgemm_u8s8(conv3.args(a3.data(), nullptr, x3.data()));
    t.qpack_u8(a3.data(), kBatch, 1, 120, kBatch, x4.data());
    t.qgemm_u8s8(fc1.args(a4.data(), nullptr, x4.data()));
    t.qpack_u8(a4.data(), kBatch, 1, 84, kBatch, x5.data());
    t.qgemm_u8s8(fc2.args(nullptr, logits.data(), x5.data()));
  }
};

void BM_lenet_chain(benchmark::State& state, Isa isa) {
  const lowbit::KernelTable* t = lowbit::kernels_for(isa);
  if (!t) {
    state.SkipWithError("ISA not supported by this CPU");
    return;
  }
  LeNetChain chain;
  chain.run(*lowbit::kernels_for(Isa::ref));
  const std::vector<int32_t> want = chain.logits;
  chain.run(*t);
  if (chain.logits != want) {
    state.SkipWithError("result differs from the reference");
    return;
  }
  for (auto _ : state) {
    chain.run(*t);
    benchmark::ClobberMemory();
  }
  state.counters["images/s"] = benchmark::Counter(double(LeNetChain::kBatch) * double(state.iterations()),
                                                  benchmark::Counter::kIsRate);
}

int reg = [] {
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512}) {
    const std::string tag = lowbit::isa_name(isa);
    for (const GemmShape& s : kGemms)
      benchmark::RegisterBenchmark(("qgemm/" + tag + "/" + s.name).c_str(), BM_qgemm, isa, s);
    for (const ConvInput& s : kIm2col)
      benchmark::RegisterBenchmark(("qim2col/" + tag + "/" + s.name).c_str(), BM_qim2col, isa, s);
    for (const PoolShape& s : kPools)
      benchmark::RegisterBenchmark(("qmaxpool/" + tag + "/" + s.name).c_str(), BM_qmaxpool, isa, s);
    benchmark::RegisterBenchmark(("qconv1_pool/" + tag + "/im2col_gemm").c_str(), BM_conv1_pool, isa, false);
    benchmark::RegisterBenchmark(("qconv1_pool/" + tag + "/direct").c_str(), BM_conv1_pool, isa, true);
    benchmark::RegisterBenchmark(("qconv2_i32/" + tag + "/im2col_gemm").c_str(), BM_conv2_i32, isa, false);
    benchmark::RegisterBenchmark(("qconv2_i32/" + tag + "/implicit").c_str(), BM_conv2_i32, isa, true);
    benchmark::RegisterBenchmark(("qlenet_chain/" + tag + "/batch256").c_str(), BM_lenet_chain, isa);
  }
  return 0;
}();

}  // namespace
