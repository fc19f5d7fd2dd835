// Reference FP32 GEMM: the specification and test oracle for the SIMD versions.
#include "kernels/sgemm.h"

namespace lowbit {

void sgemm_ref(const SgemmArgs& g) {
  for (int i = 0; i < g.m; ++i)
    for (int j = 0; j < g.n; ++j) {
      float acc = 0.0f;
      for (int p = 0; p < g.k; ++p) acc += g.a[i * g.rs_a + p * g.cs_a] * g.b[p * g.rs_b + j * g.cs_b];
      float& c = g.c[i * g.ldc + j];
      c = g.accumulate ? c + acc : acc;
    }
}

void sgemm_rows_ref(const SgemmRowsArgs& g) {
  for (int i = 0; i < g.m; ++i)
    for (int j = 0; j < g.n; ++j) {
      float s = 0.0f;
      const float* a = g.a_rows ? g.a_rows[i] : g.a + i * g.lda;
      for (int p = 0; p < g.k; ++p) s += a[p] * g.b_rows[p][j];
      float* c = g.c + i * g.ldc + j;
      *c = g.accumulate ? *c + s : s;
    }
}

void sgemm_nt_ref(const SgemmNtArgs& g) {
  for (int i = 0; i < g.m; ++i)
    for (int j = 0; j < g.n; ++j) {
      float s = 0.0f;
      for (int p = 0; p < g.k; ++p) s += g.a_rows[i][p] * g.b_rows[j][p];
      float* c = g.c + i * g.ldc + j;
      *c = g.accumulate ? *c + s : s;
    }
}

}  // namespace lowbit
