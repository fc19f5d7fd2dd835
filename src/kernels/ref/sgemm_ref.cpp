// Reference FP32 GEMMs and col2im: the specification and test oracle for the SIMD versions.
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
      for (int seg = 0; seg < g.segments; ++seg) {
        for (int t = 0; t < g.rows; ++t) {
          const float *a = g.a_rows[seg * g.m + i] + t * g.a_ld, *b = g.b_rows[seg * g.n + j] + t * g.b_ld;
          for (int p = 0; p < g.k; ++p) s += a[p] * b[p];
        }
      }
      float* c = g.c + i * g.ldc + j;
      *c = g.accumulate ? *c + s : s;
    }
}

void col2im_f32_ref(const Col2imArgs& a) {
  const int P = a.oh * a.ow;
  for (int ci = 0; ci < a.c; ++ci)
    for (int ky = 0; ky < a.k; ++ky)
      for (int kx = 0; kx < a.k; ++kx) {
        const float* row = a.col + ((int64_t{ci} * a.k + ky) * a.k + kx) * a.ld;
        for (int n = 0; n < a.t; ++n) {
          float* plane = a.dx + (int64_t{n} * a.c + ci) * a.h * a.w;
          const float* src = row + int64_t{n} * P;
          for (int oy = 0; oy < a.oh; ++oy) {
            const int iy = oy * a.stride - a.pad + ky;
            if (iy < 0 || iy >= a.h) continue;
            for (int ox = 0; ox < a.ow; ++ox) {
              const int ix = ox * a.stride - a.pad + kx;
              if (ix >= 0 && ix < a.w) plane[iy * a.w + ix] += src[oy * a.ow + ox];
            }
          }
        }
      }
}

}  // namespace lowbit
