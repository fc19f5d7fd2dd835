// AVX-512 VNNI u8 x s8 GEMM with fused requantization, bit-exact to qgemm_u8s8_ref (contract in
// kernels/qkernels.h). Not here: im2col, threading, the other ISAs.
//
// Micro-kernel: 6 (or 4) rows of W times 64 columns of packed X (four zmm of 16 columns x 4 k).
// Per k-block of 4: four 64-byte loads of X, one 32-bit broadcast of W per row (folded into
// vpdpbusd as {1to16}), 24 (or 16) vpdpbusd into independent accumulators: PERFORMANCE.md wants
// 12+ in flight. vpdpbusd (u8 x s8, four products summed into s32) is exact and wraps like the
// reference's modulo-2^32 sum. Rows: 6 fits conv1 (M=6), conv3 (120) and fc1 (84); M=16 runs
// as 6+6+4 and M=10 as 6+4. Columns: a tile covers 1-4 zmm chunks, the last one masked, so a
// ragged N wastes at most 15 columns. Rows past M are computed from row 0 and not stored.
// Requantization runs on the accumulators in registers: fixedpoint (both roundings) and float
// in SIMD; divide falls back to requantize_ref per element (exact, slower).
// GCC 12 warns falsely about _mm512_undefined_* inside inlined AVX-512 intrinsics (GCC bug
// 105593, fixed in GCC 13); the pragma must precede the header.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "kernels/qkernels.h"

#define LOWBIT_INLINE inline __attribute__((always_inline))

namespace lowbit {
namespace {

// One output row's requantization constants, broadcast once per tile row.
struct RowRequant {
  __m512i q31, nudge, rmask, rhalf, sat_hi, sat_lo, lo_rel, hi_rel, z;
  __m128i left, right;
  __m512 scale, flo, fhi;
  bool has_left;
};

LOWBIT_INLINE RowRequant row_requant(const QGemmArgs& a, int i) {
  const RequantParams& p = *a.rq;
  RowRequant q{};
  q.z = _mm512_set1_epi32(p.z_out);
  q.lo_rel = _mm512_set1_epi32(p.lo - p.z_out);  // clamp before adding z_out: no overflow
  q.hi_rel = _mm512_set1_epi32(p.hi - p.z_out);
  q.flo = _mm512_set1_ps(static_cast<float>(p.lo - p.z_out));
  q.fhi = _mm512_set1_ps(static_cast<float>(p.hi - p.z_out));
  q.has_left = false;
  if (a.variant == RequantVariant::fixedpoint || a.variant == RequantVariant::fixedpoint_floor) {
    const int shift = p.shift[i];
    const int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    q.q31 = _mm512_set1_epi32(p.q31[i]);
    q.nudge = _mm512_set1_epi64(a.variant == RequantVariant::fixedpoint ? (int64_t{1} << 30) : 0);
    const int32_t mask = static_cast<int32_t>((int64_t{1} << right) - 1);
    q.rmask = _mm512_set1_epi32(mask);
    q.rhalf = _mm512_set1_epi32(mask >> 1);
    q.has_left = left > 0;
    q.left = _mm_cvtsi32_si128(left);
    q.right = _mm_cvtsi32_si128(right);
    q.sat_hi = _mm512_set1_epi32(INT32_MAX >> left);
    q.sat_lo = _mm512_set1_epi32(INT32_MIN >> left);
  } else if (a.variant == RequantVariant::float_nearest || a.variant == RequantVariant::float_floor) {
    q.scale = _mm512_set1_ps(p.scale[i]);
  }
  return q;
}

// requant of 16 accumulators (bias already added), clamped, as 16 bytes.
LOWBIT_INLINE __m128i requant16(__m512i v, const RowRequant& q, RequantVariant variant) {
  if (variant == RequantVariant::float_nearest || variant == RequantVariant::float_floor) {
    // Clamping before rounding equals rounding before clamping: the bounds are integers.
    __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), q.scale);
    f = _mm512_min_ps(_mm512_max_ps(f, q.flo), q.fhi);
    const __m512i r = variant == RequantVariant::float_nearest
                          ? _mm512_cvt_roundps_epi32(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
                          : _mm512_cvt_roundps_epi32(f, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    return _mm512_cvtepi32_epi8(_mm512_add_epi32(r, q.z));
  }
  if (q.has_left) {  // x * 2^left saturated to int32
    const __mmask16 over = _mm512_cmpgt_epi32_mask(v, q.sat_hi);
    const __mmask16 under = _mm512_cmplt_epi32_mask(v, q.sat_lo);
    v = _mm512_sll_epi32(v, q.left);
    v = _mm512_mask_mov_epi32(v, over, _mm512_set1_epi32(INT32_MAX));
    v = _mm512_mask_mov_epi32(v, under, _mm512_set1_epi32(INT32_MIN));
  }
  // srdhm = (x*q31 + 2^30) >> 31 (see requant_ref.h), floor variant without the 2^30; the
  // result is bits 31..62 of the 64-bit sum, so logical and arithmetic shifts agree on it.
  __m512i even = _mm512_add_epi64(_mm512_mul_epi32(v, q.q31), q.nudge);
  __m512i odd = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(v, 32), q.q31), q.nudge);
  even = _mm512_srli_epi64(even, 31);  // bits 31..62 into the low dword
  odd = _mm512_slli_epi64(odd, 1);     // bits 31..62 into the high dword
  v = _mm512_mask_blend_epi32(0xAAAA, even, odd);
  if (variant == RequantVariant::fixedpoint) {  // rounding divide by 2^right, ties away from 0
    const __m512i rem = _mm512_and_si512(v, q.rmask);
    const __m512i thr = _mm512_add_epi32(q.rhalf, _mm512_srli_epi32(v, 31));
    const __mmask16 up = _mm512_cmpgt_epi32_mask(rem, thr);
    v = _mm512_sra_epi32(v, q.right);
    v = _mm512_mask_sub_epi32(v, up, v, _mm512_set1_epi32(-1));
  } else {
    v = _mm512_sra_epi32(v, q.right);
  }
  v = _mm512_min_epi32(_mm512_max_epi32(v, q.lo_rel), q.hi_rel);
  return _mm512_cvtepi32_epi8(_mm512_add_epi32(v, q.z));
}

// Where output columns j..j+count-1 go: offset of column j within a row, and whether the run is
// contiguous (it is unless it crosses an image boundary).
struct ColumnRun {
  int j, count;
  int64_t off;
  bool contiguous;
};

LOWBIT_INLINE ColumnRun column_run(const QGemmArgs& a, int j, int count) {
  const int p = a.cols_per_image;
  if (p <= 0) return {j, count, j, true};
  const int img = j / p, col = j - img * p;
  return {j, count, int64_t{img} * a.ldc_image + col, col + count <= p};
}

LOWBIT_INLINE int64_t scattered_offset(const QGemmArgs& a, int j) {
  return int64_t{j / a.cols_per_image} * a.ldc_image + j % a.cols_per_image;
}

LOWBIT_INLINE void store_u8(const QGemmArgs& a, int i, const ColumnRun& run, __m128i bytes) {
  uint8_t* row = a.c_u8 + int64_t{i} * a.ldc;
  if (run.contiguous) {
    _mm_mask_storeu_epi8(row + run.off, static_cast<__mmask16>((1u << run.count) - 1), bytes);
    return;
  }
  alignas(16) uint8_t tmp[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(tmp), bytes);
  for (int t = 0; t < run.count; ++t) row[scattered_offset(a, run.j + t)] = tmp[t];
}

LOWBIT_INLINE void store_i32(const QGemmArgs& a, int i, const ColumnRun& run, __m512i v) {
  int32_t* row = a.c_i32 + int64_t{i} * a.ldc;
  if (run.contiguous) {
    _mm512_mask_storeu_epi32(row + run.off, static_cast<__mmask16>((1u << run.count) - 1), v);
    return;
  }
  alignas(64) int32_t tmp[16];
  _mm512_store_si512(tmp, v);
  for (int t = 0; t < run.count; ++t) row[scattered_offset(a, run.j + t)] = tmp[t];
}

// Adds bias_eff and writes rows i0..i0+rows-1, columns j0..j0+cols-1 of a tile held in buf
// (row r at buf + 64*r): raw int32, or requantized to u8.
__attribute__((noinline)) void finish_tile(const QGemmArgs& a, const int32_t* buf, int i0, int rows,
                                           int j0, int cols) {
  const bool divide =
      a.variant == RequantVariant::divide_nearest || a.variant == RequantVariant::divide_floor;
  ColumnRun runs[4];
  const int nch = (cols + 15) / 16;
  for (int c = 0; c < nch; ++c) runs[c] = column_run(a, j0 + 16 * c, cols - 16 * c < 16 ? cols - 16 * c : 16);
  for (int r = 0; r < rows; ++r) {
    const int i = i0 + r;
    const __m512i bias = _mm512_set1_epi32(a.bias[i]);
    RowRequant q{};
    if (!a.c_i32 && !divide) q = row_requant(a, i);
    for (int c = 0; c < nch; ++c) {
      const __m512i v = _mm512_add_epi32(_mm512_load_si512(buf + r * 64 + 16 * c), bias);
      if (a.c_i32) {
        store_i32(a, i, runs[c], v);
      } else if (divide) {  // scalar, exact: no SIMD integer division
        alignas(64) int32_t vi[16];
        alignas(16) uint8_t o[16];
        _mm512_store_si512(vi, v);
        for (int t = 0; t < 16; ++t) o[t] = requantize_ref(vi[t], *a.rq, a.variant, i);
        store_u8(a, i, runs[c], _mm_load_si128(reinterpret_cast<const __m128i*>(o)));
      } else {
        store_u8(a, i, runs[c], requant16(v, q, a.variant));
      }
    }
  }
}

// One tile: rows i0..i0+rows-1 (rows <= MR), columns j0..j0+cols-1 (16*(NCH-1) < cols <= 16*NCH).
// MR and NCH are constants at every call site, so the loops unroll and acc stays in registers.
LOWBIT_INLINE void tile(const QGemmArgs& a, const int MR, const int NCH, int i0, int rows, int j0,
                        int cols) {
  const int nkb = qk4(a.k) / 4;
  const int64_t xs = int64_t{a.n} * 4;  // bytes from one k-block of packed X to the next
  const uint8_t* xp = a.x + int64_t{j0} * 4;
  const int8_t* wr[6];
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) wr[r] = a.w + int64_t{i0 + (r < rows ? r : 0)} * a.ldw;
  const int last_cols = cols - 16 * (NCH - 1);
  const __mmask16 last_mask = static_cast<__mmask16>((1u << last_cols) - 1);

  __m512i acc[6][4];
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
    #pragma GCC unroll 8
    for (int c = 0; c < NCH; ++c) acc[r][c] = _mm512_setzero_si512();
  for (int kb = 0; kb < nkb; ++kb, xp += xs) {
    __m512i xv[4];
    #pragma GCC unroll 8
    for (int c = 0; c < NCH; ++c)
      xv[c] = c == NCH - 1 ? _mm512_maskz_loadu_epi32(last_mask, xp + 64 * c)
                           : _mm512_loadu_si512(xp + 64 * c);
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      int32_t w4;
      std::memcpy(&w4, wr[r] + 4 * kb, 4);
      const __m512i wb = _mm512_set1_epi32(w4);
      #pragma GCC unroll 8
      for (int c = 0; c < NCH; ++c) acc[r][c] = _mm512_dpbusd_epi32(acc[r][c], xv[c], wb);
    }
  }

  // Spill the tile once to L1; the shared epilogue then needs no compile-time shape.
  alignas(64) int32_t buf[6 * 64];
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
    #pragma GCC unroll 8
    for (int c = 0; c < NCH; ++c) _mm512_store_si512(buf + r * 64 + 16 * c, acc[r][c]);
  finish_tile(a, buf, i0, rows, j0, cols);
}

void tile_6x1(const QGemmArgs& a, int i0, int rows, int j0, int cols) { tile(a, 6, 1, i0, rows, j0, cols); }
void tile_6x2(const QGemmArgs& a, int i0, int rows, int j0, int cols) { tile(a, 6, 2, i0, rows, j0, cols); }
void tile_6x3(const QGemmArgs& a, int i0, int rows, int j0, int cols) { tile(a, 6, 3, i0, rows, j0, cols); }
void tile_6x4(const QGemmArgs& a, int i0, int rows, int j0, int cols) { tile(a, 6, 4, i0, rows, j0, cols); }
void tile_4x1(const QGemmArgs& a, int i0, int rows, int j0, int cols) { tile(a, 4, 1, i0, rows, j0, cols); }
void tile_4x2(const QGemmArgs& a, int i0, int rows, int j0, int cols) { tile(a, 4, 2, i0, rows, j0, cols); }
void tile_4x3(const QGemmArgs& a, int i0, int rows, int j0, int cols) { tile(a, 4, 3, i0, rows, j0, cols); }
void tile_4x4(const QGemmArgs& a, int i0, int rows, int j0, int cols) { tile(a, 4, 4, i0, rows, j0, cols); }

using TileFn = void (*)(const QGemmArgs&, int, int, int, int);
constexpr TileFn kTiles6[4] = {tile_6x1, tile_6x2, tile_6x3, tile_6x4};
constexpr TileFn kTiles4[4] = {tile_4x1, tile_4x2, tile_4x3, tile_4x4};

}  // namespace

void qgemm_u8s8_6x64__avx512vnni(const QGemmArgs& a) {
  // Columns outer: the 64-column slice of X (K4 * 64 bytes) stays in L1 across row tiles.
  for (int j0 = 0; j0 < a.n; j0 += 64) {
    const int cols = a.n - j0 < 64 ? a.n - j0 : 64;
    const int nch = (cols + 15) / 16;
    for (int i0 = 0; i0 < a.m;) {
      const int left = a.m - i0;
      // 4-row tiles for 1-4 and 8 remaining rows (16 = 6+6+4, 10 = 6+4, 8 = 4+4), else 6.
      const bool four = left <= 4 || left == 8;
      const int rows = four ? (left < 4 ? left : 4) : (left < 6 ? left : 6);
      (four ? kTiles4 : kTiles6)[nch - 1](a, i0, rows, j0, cols);
      i0 += rows;
    }
  }
}

}  // namespace lowbit
