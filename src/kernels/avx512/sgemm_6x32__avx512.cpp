// FP32 GEMM with 6x32 and 8x32 register tiles (12 or 16 zmm accumulators), AVX-512F. Compiled with AVX-512 flags
// only; reached through dispatch. Blocking and packing: sgemm.h.
#include <immintrin.h>

#include "kernels/sgemm.h"

namespace lowbit {

namespace {
constexpr int kMr = 6, kNr = 32;

// c[rows x cols] (+)= A[MR][kc] * B[kc][16 * NV], A(r, p) = aget(p, r), row p of B at brow(p);
// rows <= MR, cols <= 16 * NV. MR * NV accumulators: 6 x 2 and 8 x 2 (16 of the 32 zmm), or one
// vector per row for a panel of at most 16 columns.
template <int MR, int NV, class AGet, class BRow>
inline void tile(int kc, AGet aget, BRow brow, float* c, int64_t ldc, int rows, int cols, bool accumulate) {
  __m512 acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int p = 0; p < kc; ++p) {
    const float* bp = brow(p);
    __m512 b[NV];
    for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_ps(bp + 16 * v);
    for (int r = 0; r < MR; ++r) {
      const __m512 a = _mm512_set1_ps(aget(p, r));
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
    }
  }
  __mmask16 m[NV];
  for (int v = 0; v < NV; ++v) {
    const int left = cols - 16 * v;
    m[v] = static_cast<__mmask16>(left >= 16 ? 0xFFFF : left <= 0 ? 0 : (1u << left) - 1);
  }
  for (int r = 0; r < rows; ++r) {
    float* cr = c + r * ldc;
    for (int v = 0; v < NV; ++v) {
      __m512 x = acc[r][v];
      if (cols == 16 * NV) {
        if (accumulate) x = _mm512_add_ps(x, _mm512_loadu_ps(cr + 16 * v));
        _mm512_storeu_ps(cr + 16 * v, x);
      } else {
        if (accumulate) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m[v], cr + 16 * v));
        _mm512_mask_storeu_ps(cr + 16 * v, m[v], x);
      }
    }
  }
}

// B rows ldb floats apart (a packed panel, or B in place).
void ukernel(int kc, const float* ap, const float* bp, int64_t ldb, float* c, int64_t ldc, int rows, int cols,
             bool accumulate) {
  tile<kMr, 2>(kc, [=](int p, int r) { return ap[p * kMr + r]; }, [=](int p) { return bp + p * ldb; }, c, ldc, rows,
               cols, accumulate);
}

// A unpacked (row r at arows[r]), B rows anywhere: row p at brows[p] + j (sgemm_rows).
template <int MR, int NV>
void ukernel_rows(int kc, const float* const* arows, const float* const* brows, int64_t j, float* c, int64_t ldc,
                  int nrows, int cols, bool accumulate) {
  tile<MR, NV>(kc, [=](int p, int r) { return arows[r][p]; }, [=](int p) { return brows[p] + j; }, c, ldc, nrows,
               cols, accumulate);
}
}  // namespace

void sgemm_6x32__avx512(const SgemmArgs& g) { sgemm_blocked(g, kMr, kNr, ukernel); }

// 8-row tiles when M is a multiple of 8 (conv2's 16 channels, a tile of 16 images), else 6 rows;
// a last panel of at most 16 columns with one vector per row (conv2's 136 = 4 x 32 + 8).
void sgemm_rows__avx512(const SgemmRowsArgs& g) {
  if (g.m % 8 == 0)
    sgemm_rows_blocked(g, 8, kNr, ukernel_rows<8, 2>, ukernel_rows<8, 1>);
  else
    sgemm_rows_blocked(g, 6, kNr, ukernel_rows<6, 2>, ukernel_rows<6, 1>);
}

}  // namespace lowbit
