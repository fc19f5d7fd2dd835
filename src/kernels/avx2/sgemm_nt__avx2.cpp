// C (+)= A * B^T with both operands by row pointers along the reduction (SgemmNtArgs in
// kernels/dispatch.h), AVX2 + FMA. Register tile: 4 rows of A x 3 rows of B = 12 accumulators of
// 8 partial sums along p; a last partial group of 8 is loaded masked. Each accumulator is summed
// across its lanes once, after every segment. Rows past m or n read row 0 and are not stored.
#include <immintrin.h>

#include "kernels/sgemm.h"

namespace lowbit {
namespace {

constexpr int MR = 4, NR = 3;

float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

void tile(const SgemmNtArgs& g, int i0, int rows, int j0, int cols) {
  __m256 acc[MR][NR];
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
    #pragma GCC unroll 8
    for (int c = 0; c < NR; ++c) acc[r][c] = _mm256_setzero_ps();
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int seg = 0; seg < g.segments; ++seg) {
    const float* a[MR];
    const float* b[NR];
    for (int r = 0; r < MR; ++r) a[r] = g.a_rows[int64_t{seg} * g.m + i0 + (r < rows ? r : 0)];
    for (int c = 0; c < NR; ++c) b[c] = g.b_rows[int64_t{seg} * g.n + j0 + (c < cols ? c : 0)];
    for (int t = 0; t < g.rows; ++t) {
      for (int p = 0; p < g.k; p += 8) {
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(g.k - p), lane);  // lanes p + l < k
        __m256 bv[NR];
        #pragma GCC unroll 8
        for (int c = 0; c < NR; ++c) bv[c] = _mm256_maskload_ps(b[c] + t * g.b_ld + p, m);
        #pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
          const __m256 av = _mm256_maskload_ps(a[r] + t * g.a_ld + p, m);
          #pragma GCC unroll 8
          for (int c = 0; c < NR; ++c) acc[r][c] = _mm256_fmadd_ps(av, bv[c], acc[r][c]);
        }
      }
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
    #pragma GCC unroll 8
    for (int c = 0; c < NR; ++c) {
      if (r >= rows || c >= cols) continue;
      float* out = g.c + int64_t{i0 + r} * g.ldc + j0 + c;
      const float s = hsum(acc[r][c]);
      *out = g.accumulate ? *out + s : s;
    }
}

}  // namespace

void sgemm_nt__avx2(const SgemmNtArgs& g) {
  for (int i0 = 0; i0 < g.m; i0 += MR)
    for (int j0 = 0; j0 < g.n; j0 += NR) tile(g, i0, g.m - i0 < MR ? g.m - i0 : MR, j0, g.n - j0 < NR ? g.n - j0 : NR);
}

}  // namespace lowbit
