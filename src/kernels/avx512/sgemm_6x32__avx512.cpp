// FP32 GEMM with a 6x32 register tile (12 zmm accumulators), AVX-512F. Compiled with AVX-512 flags
// only; reached through dispatch. Blocking and packing: sgemm.h.
#include <immintrin.h>

#include "kernels/sgemm.h"

namespace lowbit {

namespace {
constexpr int kMr = 6, kNr = 32;

// c[rows x cols] (+)= A[6][kc] * B[kc][32], A(r, p) = aget(p, r), row p of B at brow(p); rows <= 6,
// cols <= 32.
template <class AGet, class BRow>
inline void tile(int kc, AGet aget, BRow brow, float* c, int64_t ldc, int rows, int cols, bool accumulate) {
  __m512 acc[kMr][2];
  for (int r = 0; r < kMr; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int p = 0; p < kc; ++p) {
    const float* bp = brow(p);
    __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
    for (int r = 0; r < kMr; ++r) {
      __m512 a = _mm512_set1_ps(aget(p, r));
      acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
    }
  }
  if (cols == kNr) {
    for (int r = 0; r < rows; ++r) {
      float* cr = c + r * ldc;
      __m512 c0 = acc[r][0], c1 = acc[r][1];
      if (accumulate) {
        c0 = _mm512_add_ps(c0, _mm512_loadu_ps(cr));
        c1 = _mm512_add_ps(c1, _mm512_loadu_ps(cr + 16));
      }
      _mm512_storeu_ps(cr, c0);
      _mm512_storeu_ps(cr + 16, c1);
    }
    return;
  }
  __mmask16 m0 = static_cast<__mmask16>(cols >= 16 ? 0xFFFF : (1u << cols) - 1);
  __mmask16 m1 = static_cast<__mmask16>(cols <= 16 ? 0 : (1u << (cols - 16)) - 1);
  for (int r = 0; r < rows; ++r) {
    float* cr = c + r * ldc;
    __m512 c0 = acc[r][0], c1 = acc[r][1];
    if (accumulate) {
      c0 = _mm512_add_ps(c0, _mm512_maskz_loadu_ps(m0, cr));
      c1 = _mm512_add_ps(c1, _mm512_maskz_loadu_ps(m1, cr + 16));
    }
    _mm512_mask_storeu_ps(cr, m0, c0);
    _mm512_mask_storeu_ps(cr + 16, m1, c1);
  }
}

// B rows ldb floats apart (a packed panel, or B in place).
void ukernel(int kc, const float* ap, const float* bp, int64_t ldb, float* c, int64_t ldc, int rows, int cols,
             bool accumulate) {
  tile(kc, [=](int p, int r) { return ap[p * kMr + r]; }, [=](int p) { return bp + p * ldb; }, c, ldc, rows, cols,
       accumulate);
}

// A unpacked (row r at arows[r]), B rows anywhere: row p at brows[p] + j (sgemm_rows).
void ukernel_rows(int kc, const float* const* arows, const float* const* brows, int64_t j, float* c, int64_t ldc,
                  int nrows, int cols, bool accumulate) {
  tile(kc, [=](int p, int r) { return arows[r][p]; }, [=](int p) { return brows[p] + j; }, c, ldc, nrows, cols,
       accumulate);
}
}  // namespace

void sgemm_6x32__avx512(const SgemmArgs& g) { sgemm_blocked(g, kMr, kNr, ukernel); }
void sgemm_rows_6x32__avx512(const SgemmRowsArgs& g) { sgemm_rows_blocked(g, kMr, kNr, ukernel_rows); }

}  // namespace lowbit
