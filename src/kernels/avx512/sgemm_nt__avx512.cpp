// C (+)= A * B^T with both operands by row pointers along the reduction (SgemmNtArgs in
// kernels/dispatch.h), AVX-512. Register tile: 4 rows of A x 6 rows of B = 24 accumulators of 16
// partial sums along p; per 16 p: 10 loads (the last masked), 24 FMAs. Each accumulator is summed
// across its lanes once, after every segment. Rows past m or n read row 0 and are not stored.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 bug 105593, before the header
#include <immintrin.h>

#include "kernels/sgemm.h"

namespace lowbit {
namespace {

constexpr int MR = 4, NR = 6;

void tile(const SgemmNtArgs& g, int i0, int rows, int j0, int cols) {
  __m512 acc[MR][NR];
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
    #pragma GCC unroll 8
    for (int c = 0; c < NR; ++c) acc[r][c] = _mm512_setzero_ps();
  const int full = g.k / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (g.k - full)) - 1);
  // acc[r][c] += A row r * B row c over 16 floats at a + p, b + p, the last group masked.
  auto step = [&](const float* const* a, const float* const* b, int64_t oa, int64_t ob, int p, __mmask16 m) {
    __m512 bv[NR];
    #pragma GCC unroll 8
    for (int c = 0; c < NR; ++c) bv[c] = _mm512_maskz_loadu_ps(m, b[c] + ob + p);
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_maskz_loadu_ps(m, a[r] + oa + p);
      #pragma GCC unroll 8
      for (int c = 0; c < NR; ++c) acc[r][c] = _mm512_fmadd_ps(av, bv[c], acc[r][c]);
    }
  };
  for (int seg = 0; seg < g.segments; ++seg) {
    const float* a[MR];
    const float* b[NR];
    for (int r = 0; r < MR; ++r) a[r] = g.a_rows[int64_t{seg} * g.m + i0 + (r < rows ? r : 0)];
    for (int c = 0; c < NR; ++c) b[c] = g.b_rows[int64_t{seg} * g.n + j0 + (c < cols ? c : 0)];
    for (int64_t t = 0, oa = 0, ob = 0; t < g.rows; ++t, oa += g.a_ld, ob += g.b_ld) {
      for (int p = 0; p < full; p += 16) step(a, b, oa, ob, p, 0xFFFF);
      if (tail) step(a, b, oa, ob, full, tail);
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
    #pragma GCC unroll 8
    for (int c = 0; c < NR; ++c) {
      if (r >= rows || c >= cols) continue;
      float* out = g.c + int64_t{i0 + r} * g.ldc + j0 + c;
      const float s = _mm512_reduce_add_ps(acc[r][c]);
      *out = g.accumulate ? *out + s : s;
    }
}

}  // namespace

// B's tile outermost: its rows stay in L1 while every tile of A passes (LeNet's conv3 forward:
// A = 16 images x 400 floats, B = 120 weight rows of 400; 4 x 6 tiles cover 16 x 120 and fc1's
// 16 x 84 exactly).
void sgemm_nt__avx512(const SgemmNtArgs& g) {
  for (int j0 = 0; j0 < g.n; j0 += NR)
    for (int i0 = 0; i0 < g.m; i0 += MR) tile(g, i0, g.m - i0 < MR ? g.m - i0 : MR, j0, g.n - j0 < NR ? g.n - j0 : NR);
}

}  // namespace lowbit
