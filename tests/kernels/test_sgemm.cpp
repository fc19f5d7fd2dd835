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

// sgemm_rows: B given by row pointers into one buffer at arbitrary (overlapping) offsets, as a
// convolution's rows are; each row readable kSgemmRowsSlack floats past n - 1 and no further
// (the buffer ends there, so AddressSanitizer catches an overread). C has a wider ldc.
TEST(Sgemm, RowsEveryIsaMatchesReference) {
  Rng rng(43);
  const int ms[] = {1, 5, 6, 7, 16, 17};
  const int ns[] = {1, 15, 16, 17, 31, 32, 33, 100, 136, 892};
  const int ks[] = {1, 5, 25, 150, 255, 256, 257};
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t) continue;
    for (int m : ms)
      for (int n : ns)
        for (int k : ks) {
          const bool accumulate = (m + n + k) % 2 == 0;
          std::vector<float> a(size_t(m) * k), c(size_t(m) * (n + 3)), r;
          for (float& v : a) v = rng.uniform(-1, 1);
          for (float& v : c) v = rng.uniform(-1, 1);
          r = c;
          const int span = 3 * k + 7;  // row p starts at a random offset below span
          std::vector<float> buf(size_t(span) + n + kSgemmRowsSlack);
          for (float& v : buf) v = rng.uniform(-1, 1);
          std::vector<const float*> rows(static_cast<size_t>(k));
          for (auto& row : rows) row = buf.data() + rng.below(static_cast<uint32_t>(span));
          SgemmRowsArgs g{m, n, k, a.data(), k, rows.data(), c.data(), n + 3, accumulate};
          t->sgemm_rows(g);
          SgemmArgs gr{m, n, k, a.data(), k, 1, nullptr, 0, 0, r.data(), n + 3, accumulate};
          // The reference on B copied out into a plain matrix.
          std::vector<float> b(size_t(k) * n);
          for (int p = 0; p < k; ++p)
            for (int j = 0; j < n; ++j) b[size_t(p) * n + j] = rows[size_t(p)][j];
          gr.b = b.data(), gr.rs_b = n, gr.cs_b = 1;
          sgemm_ref(gr);
          const float tol = 8e-6f * std::sqrt(static_cast<float>(k));
          for (size_t i = 0; i < c.size(); ++i)
            ASSERT_NEAR(c[i], r[i], tol) << isa_name(isa) << " m=" << m << " n=" << n << " k=" << k << " index=" << i;
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
