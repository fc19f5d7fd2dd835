// AVX-512 VNNI u8 x s8 GEMM with fused requantization, bit-exact to qgemm_u8s8_ref (contract in
// kernels/qkernels.h). Not here: im2col, threading, the other ISAs.
//
// Micro-kernel: 6 (or 4) rows of W times 64 columns of packed X (four zmm of 16 columns x 4 k).
// Per k-block of 4: four 64-byte loads of X, one 32-bit broadcast of W per row, 24 (or 16)
// vpdpbusd into independent accumulators: PERFORMANCE.md wants 12+ in flight. vpdpbusd (u8 x s8, four products summed into s32) is exact and wraps like the
// reference's modulo-2^32 sum. Rows: 6 fits conv1 (M=6), conv3 (120) and fc1 (84); M=16 runs
// as 6+6+4 and M=10 as 6+4. Columns: a tile covers 1-4 zmm chunks, the last one masked, so a
// ragged N wastes at most 15 columns. Rows past M are computed from row 0 and not stored.
// Requantization: fixedpoint (both roundings) and float in SIMD on 16-lane vectors, then four
// vectors of a row are saturated, offset and clamped together as 64 bytes (packs, not vpmovdb);
// divide falls back to requantize_ref per element (exact, slower).
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
  __m512i q31, nudge, rmask, rhalf, sat_hi, sat_lo, round64;
  __m128i left, right, shift64;
  __m512 scale, flo, fhi;
  bool has_left;
  bool one_shift;  // the fixedpoint result is one 64-bit rounding shift (see requant16)
};

LOWBIT_INLINE RowRequant row_requant(const QGemmArgs& a, int i) {
  const RequantParams& p = *a.rq;
  RowRequant q{};
  q.flo = _mm512_set1_ps(static_cast<float>(p.lo - p.z_out));
  q.fhi = _mm512_set1_ps(static_cast<float>(p.hi - p.z_out));
  if (a.variant == RequantVariant::fixedpoint || a.variant == RequantVariant::fixedpoint_floor) {
    const bool nearest = a.variant == RequantVariant::fixedpoint;
    const int shift = p.shift[i];
    const int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    q.q31 = _mm512_set1_epi32(p.q31[i]);
    q.nudge = _mm512_set1_epi64(nearest ? (int64_t{1} << 30) : 0);
    const int32_t mask = static_cast<int32_t>((int64_t{1} << right) - 1);
    q.rmask = _mm512_set1_epi32(mask);
    q.rhalf = _mm512_set1_epi32(mask >> 1);
    q.has_left = left > 0;
    q.left = _mm_cvtsi32_si128(left);
    q.right = _mm_cvtsi32_si128(right);
    q.sat_hi = _mm512_set1_epi32(INT32_MAX >> left);
    q.sat_lo = _mm512_set1_epi32(INT32_MIN >> left);
    // floor: floor(x*q31 / 2^(31+right)) exactly. nearest with lo >= z_out (fused ReLU): for
    // y = srdhm(x) >= 0, rdivpot(y) = floor((x*q31 + 2^30 + 2^(30+right)) / 2^(31+right))
    // (nested floors of integer quotients compose); for y < 0 both that and rdivpot(y) are <= 0
    // and clamp to lo - z_out >= 0 alike.
    q.one_shift = !nearest || p.lo >= p.z_out;
    q.round64 = _mm512_set1_epi64(!nearest ? 0 : (int64_t{1} << 30) + (right > 0 ? int64_t{1} << (30 + right) : 0));
    q.shift64 = _mm_cvtsi32_si128(31 + right);
  } else if (a.variant == RequantVariant::float_nearest || a.variant == RequantVariant::float_floor) {
    q.scale = _mm512_set1_ps(p.scale[i]);
  }
  return q;
}

// requant(acc) of 16 accumulators (bias added), without z_out; the caller clamps.
LOWBIT_INLINE __m512i requant16(__m512i v, const RowRequant& q, RequantVariant variant) {
  if (variant == RequantVariant::float_nearest || variant == RequantVariant::float_floor) {
    // Clamping to [lo - z, hi - z] before rounding equals rounding before clamping (integer
    // bounds) and keeps the conversion in range.
    __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), q.scale);
    f = _mm512_min_ps(_mm512_max_ps(f, q.flo), q.fhi);
    return variant == RequantVariant::float_nearest
               ? _mm512_cvt_roundps_epi32(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
               : _mm512_cvt_roundps_epi32(f, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  }
  if (q.has_left) {  // x * 2^left saturated to int32
    const __mmask16 over = _mm512_cmpgt_epi32_mask(v, q.sat_hi);
    const __mmask16 under = _mm512_cmplt_epi32_mask(v, q.sat_lo);
    v = _mm512_sll_epi32(v, q.left);
    v = _mm512_mask_mov_epi32(v, over, _mm512_set1_epi32(INT32_MAX));
    v = _mm512_mask_mov_epi32(v, under, _mm512_set1_epi32(INT32_MIN));
  }
  __m512i even = _mm512_mul_epi32(v, q.q31);  // 64-bit x*q31 of lanes 0, 2, ..
  __m512i odd = _mm512_mul_epi32(_mm512_srli_epi64(v, 32), q.q31);  // lanes 1, 3, ..
  if (q.one_shift) {  // see row_requant; the result fits int32, so its low dword is exact
    even = _mm512_sra_epi64(_mm512_add_epi64(even, q.round64), q.shift64);
    odd = _mm512_sra_epi64(_mm512_add_epi64(odd, q.round64), q.shift64);
    return _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
  }
  // srdhm = (x*q31 + 2^30) >> 31 (see requant_ref.h): bits 31..62 of the 64-bit sum.
  even = _mm512_srli_epi64(_mm512_add_epi64(even, q.nudge), 31);  // into the low dword
  odd = _mm512_slli_epi64(_mm512_add_epi64(odd, q.nudge), 1);     // into the high dword
  v = _mm512_mask_blend_epi32(0xAAAA, even, odd);
  // rounding divide by 2^right, ties away from zero
  const __m512i rem = _mm512_and_si512(v, q.rmask);
  const __m512i thr = _mm512_add_epi32(q.rhalf, _mm512_srli_epi32(v, 31));
  const __mmask16 up = _mm512_cmpgt_epi32_mask(rem, thr);
  v = _mm512_sra_epi32(v, q.right);
  return _mm512_mask_sub_epi32(v, up, v, _mm512_set1_epi32(-1));
}

// 64 values of requant(acc) -> clamp(z_out + v, lo, hi) as bytes in order. Exact for any int32
// v: packssdw saturates to int16, paddsw adds z_out saturating, packuswb saturates to [0, 255],
// and lo, hi lie inside [0, 255].
LOWBIT_INLINE __m512i clamp_pack64(__m512i v0, __m512i v1, __m512i v2, __m512i v3, __m512i z16,
                                   __m512i lo8, __m512i hi8) {
  const __m512i a = _mm512_adds_epi16(_mm512_packs_epi32(v0, v1), z16);
  const __m512i b = _mm512_adds_epi16(_mm512_packs_epi32(v2, v3), z16);
  __m512i u = _mm512_min_epu8(_mm512_max_epu8(_mm512_packus_epi16(a, b), lo8), hi8);
  // 128-bit lane L now holds v0[4L..4L+3], v1[4L..], v2[4L..], v3[4L..]; put them in order.
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_epi32(order, u);
}

// Copies columns j0..j0+cols-1 (cols <= 64) of one output row from tmp to `row`, one
// contiguous segment per image they touch (column -> address map in QGemmArgs).
LOWBIT_INLINE void store_segments(const QGemmArgs& a, void* row, const void* tmp, int elem_size, int j0, int cols) {
  const int p = a.cols_per_image;
  if (p == 1) {  // batch-major output (logits): a strided column
    for (int t = 0; t < cols; ++t)
      std::memcpy(static_cast<char*>(row) + (j0 + t) * a.ldc_image * elem_size,
                  static_cast<const char*>(tmp) + t * elem_size, static_cast<size_t>(elem_size));
    return;
  }
  for (int t = 0; t < cols;) {
    const int j = j0 + t, img = j / p, col = j - img * p;
    const int len = cols - t < p - col ? cols - t : p - col;
    std::memcpy(static_cast<char*>(row) + (int64_t{img} * a.ldc_image + col) * elem_size,
                static_cast<const char*>(tmp) + t * elem_size, static_cast<size_t>(len) * elem_size);
    t += len;
  }
}

// Adds bias_eff and writes rows i0..i0+rows-1, columns j0..j0+cols-1 of a tile held in buf
// (row r at buf + 64*r): raw int32, or requantized to u8.
__attribute__((noinline)) void finish_tile(const QGemmArgs& a, const int32_t* buf, int i0, int rows,
                                           int j0, int cols) {
  const int nch = (cols + 15) / 16;
  const int p = a.cols_per_image;
  // Columns j0..j0+cols-1 are one contiguous run unless they cross an image boundary.
  const bool contiguous = p <= 0 || j0 % p + cols <= p;
  const int64_t off = p <= 0 ? j0 : int64_t{j0 / p} * a.ldc_image + j0 % p;
  if (a.c_i32) {
    for (int r = 0; r < rows; ++r) {
      int32_t* row = a.c_i32 + int64_t{i0 + r} * a.ldc;
      const __m512i bias = _mm512_set1_epi32(a.bias[i0 + r]);
      for (int c = 0; c < nch; ++c) {
        const int count = cols - 16 * c < 16 ? cols - 16 * c : 16;
        const __m512i v = _mm512_add_epi32(_mm512_load_si512(buf + r * 64 + 16 * c), bias);
        if (contiguous) {
          _mm512_mask_storeu_epi32(row + off + 16 * c, static_cast<__mmask16>((1u << count) - 1), v);
        } else {
          alignas(64) int32_t tmp[16];
          _mm512_store_si512(tmp, v);
          store_segments(a, row, tmp, 4, j0 + 16 * c, count);
        }
      }
    }
    return;
  }
  const RequantParams& rp = *a.rq;
  const bool divide =
      a.variant == RequantVariant::divide_nearest || a.variant == RequantVariant::divide_floor;
  const __m512i z16 = _mm512_set1_epi16(static_cast<int16_t>(rp.z_out));
  const __m512i lo8 = _mm512_set1_epi8(static_cast<char>(rp.lo)), hi8 = _mm512_set1_epi8(static_cast<char>(rp.hi));
  const __mmask64 mask = cols == 64 ? ~__mmask64{0} : (__mmask64{1} << cols) - 1;
  for (int r = 0; r < rows; ++r) {
    const int i = i0 + r;
    const __m512i bias = _mm512_set1_epi32(a.bias[i]);
    __m512i v[4];
    for (int c = 0; c < 4; ++c)
      v[c] = c < nch ? _mm512_add_epi32(_mm512_load_si512(buf + r * 64 + 16 * c), bias) : bias;
    __m512i bytes;
    if (divide) {  // scalar, exact: no SIMD integer division
      alignas(64) int32_t vi[64];
      alignas(64) uint8_t o[64];
      for (int c = 0; c < 4; ++c) _mm512_store_si512(vi + 16 * c, v[c]);
      for (int t = 0; t < 64; ++t) o[t] = requantize_ref(vi[t], rp, a.variant, i);
      bytes = _mm512_load_si512(o);
    } else {
      const RowRequant q = row_requant(a, i);
      for (int c = 0; c < 4; ++c) v[c] = requant16(v[c], q, a.variant);
      bytes = clamp_pack64(v[0], v[1], v[2], v[3], z16, lo8, hi8);
    }
    uint8_t* row = a.c_u8 + int64_t{i} * a.ldc;
    if (contiguous) {
      _mm512_mask_storeu_epi8(row + off, mask, bytes);
    } else {
      alignas(64) uint8_t tmp[64];
      _mm512_store_si512(tmp, bytes);
      store_segments(a, row, tmp, 1, j0, cols);
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
