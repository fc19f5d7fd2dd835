// Every FP32 GEMM the CPU supports against the naive reference, over shapes below, at and above
// the register tiles (6 rows; 16 and 32 columns) and the K and N blocks, with transposed operands
// and accumulation. Tolerance grows with sqrt(K).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/sgemm.h"
#include "lowbit/core.h"

namespace lowbit {
namespace {

TEST(Sgemm, EveryIsaMatchesReference) {
  Rng rng(42);
  const int ms[] = {1, 5, 6, 7, 12, 13, 17};
  const int ns[] = {1, 15, 16, 17, 31, 32, 33, 65, 2049};
  const int ks[] = {1, 4, 25, 255, 256, 257};
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t) continue;
    for (int m : ms)
      for (int n : ns)
        for (int k : ks)
          for (int variant = 0; variant < 3; ++variant) {
            if (n == 2049 && k > 25) continue;  // keep the test fast; N blocking is covered
            bool trans_a = variant == 1, trans_b = variant == 2, accumulate = variant != 0;
            std::vector<float> a(size_t(m) * k), b(size_t(k) * n), c(size_t(m) * n), r;
            for (float& v : a) v = rng.uniform(-1, 1);
            for (float& v : b) v = rng.uniform(-1, 1);
            for (float& v : c) v = rng.uniform(-1, 1);
            r = c;
            SgemmArgs g{m, n, k, a.data(), trans_a ? 1 : k, trans_a ? m : 1, b.data(), trans_b ? 1 : n,
                        trans_b ? k : 1, c.data(), n, accumulate};
            t->sgemm(g);
            SgemmArgs gr = g;
            gr.c = r.data();
            sgemm_ref(gr);
            const float tol = 8e-6f * std::sqrt(static_cast<float>(k));
            for (size_t i = 0; i < c.size(); ++i)
              ASSERT_NEAR(c[i], r[i], tol) << isa_name(isa) << " m=" << m << " n=" << n << " k=" << k
                                           << " variant=" << variant << " index=" << i;
          }
  }
}

TEST(Sgemm, ZeroKClearsOrKeeps) {
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t) continue;
    std::vector<float> c(6, 3.0f);
    t->sgemm({2, 3, 0, nullptr, 0, 0, nullptr, 0, 0, c.data(), 3, true});
    EXPECT_EQ(c[0], 3.0f) << isa_name(isa);
    t->sgemm({2, 3, 0, nullptr, 0, 0, nullptr, 0, 0, c.data(), 3, false});
    EXPECT_EQ(c[5], 0.0f) << isa_name(isa);
  }
}

}  // namespace
}  // namespace lowbit
