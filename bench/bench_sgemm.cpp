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
  for (auto _ : state) {
    t->sgemm(g);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["GFLOPS"] = benchmark::Counter(2.0 * s.m * s.n * s.k * double(state.iterations()) / 1e9,
                                                benchmark::Counter::kIsRate);
}

int reg = [] {
  for (lowbit::Isa isa : {lowbit::Isa::ref, lowbit::Isa::avx2, lowbit::Isa::avx512})
    for (const Shape3& s : kShapes)
      benchmark::RegisterBenchmark((std::string("sgemm/") + lowbit::isa_name(isa) + "/" + s.name).c_str(), BM_sgemm, isa, s);
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
