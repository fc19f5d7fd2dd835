// FP32 GEMM with a 6x16 register tile (12 ymm accumulators), AVX2 + FMA. Compiled with AVX2 flags
// only; reached through dispatch. Blocking and packing: sgemm.h.
#include <immintrin.h>

#include "kernels/sgemm.h"

namespace lowbit {

namespace {
constexpr int kMr = 6, kNr = 16;

// c[rows x cols] (+)= A[6][kc] * B[kc][16], A(r, p) = aget(p, r), row p of B at brow(p); rows <= 6,
// cols <= 16.
template <class AGet, class BRow>
inline void tile(int kc, AGet aget, BRow brow, float* c, int64_t ldc, int rows, int cols, bool accumulate) {
  __m256 acc[kMr][2];
  for (int r = 0; r < kMr; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int p = 0; p < kc; ++p) {
    const float* bp = brow(p);
    __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
    for (int r = 0; r < kMr; ++r) {
      __m256 a = _mm256_set1_ps(aget(p, r));
      acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
    }
  }
  if (cols == kNr) {
    for (int r = 0; r < rows; ++r) {
      float* cr = c + r * ldc;
      __m256 c0 = acc[r][0], c1 = acc[r][1];
      if (accumulate) {
        c0 = _mm256_add_ps(c0, _mm256_loadu_ps(cr));
        c1 = _mm256_add_ps(c1, _mm256_loadu_ps(cr + 8));
      }
      _mm256_storeu_ps(cr, c0);
      _mm256_storeu_ps(cr + 8, c1);
    }
    return;
  }
  alignas(32) float tile[kNr];
  for (int r = 0; r < rows; ++r) {
    float* cr = c + r * ldc;
    _mm256_store_ps(tile, acc[r][0]);
    _mm256_store_ps(tile + 8, acc[r][1]);
    for (int j = 0; j < cols; ++j) cr[j] = accumulate ? cr[j] + tile[j] : tile[j];
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

void sgemm_6x16__avx2(const SgemmArgs& g) { sgemm_blocked(g, kMr, kNr, ukernel); }
void sgemm_rows__avx2(const SgemmRowsArgs& g) { sgemm_rows_blocked(g, kMr, kNr, ukernel_rows, nullptr); }

}  // namespace lowbit
