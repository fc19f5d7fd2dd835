// AVX2 (no VNNI) u8 x s8 GEMM with fused requantization, bit-exact to qgemm_u8s8_ref (contract
// in kernels/qkernels.h). Not here: im2col, threading, the AVX-512 path.
//
// Exactness: vpmaddubsw would add two u8*s8 products in saturating int16 (255*(-128)*2 =
// -65280 does not fit), so both operands are widened to int16 and multiplied with vpmaddwd,
// whose int32 pair sums are exact. Per k-block of 4 and 4 columns: one 16-byte load of packed X
// widened to 16 x int16 (vpmovzxbw), W's 4 int8 of a row sign-extended to int16 and broadcast,
// one vpmaddwd + vpaddd. Each int32 lane then holds a pair sum (k0+k1 or k2+k3 of a column);
// vphaddd folds the pairs once per tile. Tile: 2 rows x 16 columns = 8 accumulators (GCC 12
// spills 2x24 and 2x20 tiles in 16 ymm registers); 2 rows fit every LeNet M (6, 16, 120, 84, 10).
// An odd last row is computed from the tile's first row and not stored. Requantization:
// fixedpoint and float in SIMD, divide by requantize_ref per element.
// GCC 12 warns falsely about _mm256_undefined_* inside inlined intrinsics (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "kernels/qkernels.h"

#define LOWBIT_INLINE inline __attribute__((always_inline))

namespace lowbit {
namespace {

// One output row's requantization constants, broadcast once per tile row.
struct RowRequant {
  __m256i q31, nudge, rmask, rhalf, sat_hi, sat_lo, round64, unbias;
  __m128i left, right, shift64;
  __m256 scale, flo, fhi;
  bool has_left;
  bool one_shift;  // the fixedpoint result is one 64-bit rounding shift (see requant8)
};

LOWBIT_INLINE RowRequant row_requant(const QGemmArgs& a, int i) {
  const RequantParams& p = *a.rq;
  RowRequant q{};
  q.flo = _mm256_set1_ps(static_cast<float>(p.lo - p.z_out));
  q.fhi = _mm256_set1_ps(static_cast<float>(p.hi - p.z_out));
  if (a.variant == RequantVariant::fixedpoint || a.variant == RequantVariant::fixedpoint_floor) {
    const bool nearest = a.variant == RequantVariant::fixedpoint;
    const int shift = p.shift[i];
    const int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    q.q31 = _mm256_set1_epi32(p.q31[i]);
    q.nudge = _mm256_set1_epi64x(nearest ? (int64_t{1} << 30) : 0);
    const int32_t mask = static_cast<int32_t>((int64_t{1} << right) - 1);
    q.rmask = _mm256_set1_epi32(mask);
    q.rhalf = _mm256_set1_epi32(mask >> 1);
    q.has_left = left > 0;
    q.left = _mm_cvtsi32_si128(left);
    q.right = _mm_cvtsi32_si128(right);
    q.sat_hi = _mm256_set1_epi32(INT32_MAX >> left);
    q.sat_lo = _mm256_set1_epi32(INT32_MIN >> left);
    // As in the AVX-512 kernel: floor, or nearest with lo >= z_out (fused ReLU), is
    // floor((x*q31 + round) / 2^(31+right)). AVX2 has no 64-bit arithmetic shift, so 2^62 is
    // added first (x*q31 > -2^62, so the sum is positive and below 2^63), shifted logically,
    // and 2^(62-31-right) subtracted again (modulo 2^32 on the low dword).
    q.one_shift = !nearest || p.lo >= p.z_out;
    const int64_t round = !nearest ? 0 : (int64_t{1} << 30) + (right > 0 ? int64_t{1} << (30 + right) : 0);
    q.round64 = _mm256_set1_epi64x(round + (int64_t{1} << 62));
    q.unbias = _mm256_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(int64_t{1} << (31 - right))));
    q.shift64 = _mm_cvtsi32_si128(31 + right);
  } else if (a.variant == RequantVariant::float_nearest || a.variant == RequantVariant::float_floor) {
    q.scale = _mm256_set1_ps(p.scale[i]);
  }
  return q;
}

// requant(acc) of 8 accumulators (bias added), without z_out; the caller clamps.
LOWBIT_INLINE __m256i requant8(__m256i v, const RowRequant& q, RequantVariant variant) {
  if (variant == RequantVariant::float_nearest || variant == RequantVariant::float_floor) {
    // Clamping to [lo - z, hi - z] before rounding equals rounding before clamping (integer
    // bounds) and keeps the conversion in range.
    __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(v), q.scale);
    f = _mm256_min_ps(_mm256_max_ps(f, q.flo), q.fhi);
    f = variant == RequantVariant::float_nearest
            ? _mm256_round_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
            : _mm256_round_ps(f, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    return _mm256_cvttps_epi32(f);  // f is integral: exact conversion
  }
  if (q.has_left) {  // x * 2^left saturated to int32
    const __m256i over = _mm256_cmpgt_epi32(v, q.sat_hi);
    const __m256i under = _mm256_cmpgt_epi32(q.sat_lo, v);
    v = _mm256_sll_epi32(v, q.left);
    v = _mm256_blendv_epi8(v, _mm256_set1_epi32(INT32_MAX), over);
    v = _mm256_blendv_epi8(v, _mm256_set1_epi32(INT32_MIN), under);
  }
  __m256i even = _mm256_mul_epi32(v, q.q31);
  __m256i odd = _mm256_mul_epi32(_mm256_srli_epi64(v, 32), q.q31);
  if (q.one_shift) {
    even = _mm256_srl_epi64(_mm256_add_epi64(even, q.round64), q.shift64);
    odd = _mm256_srl_epi64(_mm256_add_epi64(odd, q.round64), q.shift64);
    return _mm256_sub_epi32(_mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA), q.unbias);
  }
  // srdhm = (x*q31 + 2^30) >> 31 (requant_ref.h); bits 31..62 of the 64-bit sum are the result,
  // so the logical 64-bit shift is exact.
  even = _mm256_srli_epi64(_mm256_add_epi64(even, q.nudge), 31);
  odd = _mm256_slli_epi64(_mm256_add_epi64(odd, q.nudge), 1);
  v = _mm256_blend_epi32(even, odd, 0xAA);
  // rounding divide by 2^right, ties away from zero
  const __m256i rem = _mm256_and_si256(v, q.rmask);
  const __m256i thr = _mm256_add_epi32(q.rhalf, _mm256_srli_epi32(v, 31));
  const __m256i up = _mm256_cmpgt_epi32(rem, thr);  // -1 where rounding up
  return _mm256_sub_epi32(_mm256_sra_epi32(v, q.right), up);
}

// 16 values of requant(acc) -> clamp(z_out + v, lo, hi) as bytes in order. Exact for any int32
// v: packssdw saturates to int16, paddsw adds z_out saturating, packuswb saturates to [0, 255],
// and lo, hi lie inside [0, 255].
LOWBIT_INLINE __m128i clamp_pack16(__m256i v0, __m256i v1, __m256i z16, __m128i lo8, __m128i hi8) {
  const __m256i a = _mm256_adds_epi16(_mm256_packs_epi32(v0, v1), z16);
  // per 128-bit lane: [v0 0..3, v1 0..3] | [v0 4..7, v1 4..7] as bytes in dwords 0, 1 | 4, 5
  const __m256i u = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(a, a), _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0));
  return _mm_min_epu8(_mm_max_epu8(_mm256_castsi256_si128(u), lo8), hi8);
}

// Offset within an output row of column j (see QGemmArgs).
LOWBIT_INLINE int64_t column_offset(const QGemmArgs& a, int j) {
  const int p = a.cols_per_image;
  return p <= 0 ? j : int64_t{j / p} * a.ldc_image + j % p;
}

// Copies `count` elements of `elem_size` bytes for columns j0.. of one output row from tmp,
// one contiguous segment per image they touch.
LOWBIT_INLINE void store_segments(const QGemmArgs& a, void* row, const void* tmp, int elem_size, int j0, int count) {
  const int p = a.cols_per_image;
  if (p == 1) {  // batch-major output (logits): a strided column
    for (int t = 0; t < count; ++t)
      std::memcpy(static_cast<char*>(row) + (j0 + t) * a.ldc_image * elem_size,
                  static_cast<const char*>(tmp) + t * elem_size, static_cast<size_t>(elem_size));
    return;
  }
  for (int t = 0; t < count;) {
    const int j = j0 + t, col = p <= 0 ? j : j % p;
    const int len = p <= 0 ? count : (count - t < p - col ? count - t : p - col);
    std::memcpy(static_cast<char*>(row) + column_offset(a, j) * elem_size, static_cast<const char*>(tmp) + t * elem_size,
                static_cast<size_t>(len) * elem_size);
    t += len;
  }
}

// Adds bias_eff and writes rows i0..i0+rows-1, columns j0..j0+cols-1 (cols <= 16) of a tile held
// in buf (row r at buf + 16*r, columns in order).
__attribute__((noinline)) void finish_tile(const QGemmArgs& a, const int32_t* buf, int i0, int rows,
                                           int j0, int cols) {
  const int p = a.cols_per_image;
  const bool contiguous = p <= 0 || j0 % p + cols <= p;  // no image boundary inside
  const int64_t off = column_offset(a, j0);
  for (int r = 0; r < rows; ++r) {
    const int i = i0 + r;
    const __m256i bias = _mm256_set1_epi32(a.bias[i]);
    __m256i v0 = _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(buf + r * 16)), bias);
    __m256i v1 = _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(buf + r * 16 + 8)), bias);
    if (a.c_i32) {
      int32_t* row = a.c_i32 + int64_t{i} * a.ldc;
      if (contiguous && cols == 16) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(row + off), v0);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(row + off + 8), v1);
      } else {
        alignas(32) int32_t tmp[16];
        _mm256_store_si256(reinterpret_cast<__m256i*>(tmp), v0);
        _mm256_store_si256(reinterpret_cast<__m256i*>(tmp + 8), v1);
        store_segments(a, row, tmp, 4, j0, cols);
      }
      continue;
    }
    __m128i bytes;
    if (a.variant == RequantVariant::divide_nearest || a.variant == RequantVariant::divide_floor) {
      alignas(32) int32_t vi[16];  // scalar, exact: no SIMD integer division
      alignas(16) uint8_t o[16];
      _mm256_store_si256(reinterpret_cast<__m256i*>(vi), v0);
      _mm256_store_si256(reinterpret_cast<__m256i*>(vi + 8), v1);
      for (int t = 0; t < 16; ++t) o[t] = requantize_ref(vi[t], *a.rq, a.variant, i);
      bytes = _mm_load_si128(reinterpret_cast<const __m128i*>(o));
    } else {
      const RowRequant q = row_requant(a, i);
      const RequantParams& rp = *a.rq;
      bytes = clamp_pack16(requant8(v0, q, a.variant), requant8(v1, q, a.variant),
                           _mm256_set1_epi16(static_cast<int16_t>(rp.z_out)),
                           _mm_set1_epi8(static_cast<char>(rp.lo)), _mm_set1_epi8(static_cast<char>(rp.hi)));
    }
    uint8_t* row = a.c_u8 + int64_t{i} * a.ldc;
    if (contiguous && cols == 16) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(row + off), bytes);
    } else {
      alignas(16) uint8_t tmp[16];
      _mm_store_si128(reinterpret_cast<__m128i*>(tmp), bytes);
      store_segments(a, row, tmp, 1, j0, cols);
    }
  }
}

// One tile: rows i0..i0+rows-1 (rows <= 2), columns j0..j0+cols-1 (4*(NCH-1) < cols <= 4*NCH,
// NCH <= 4).
// NCH is a constant at every call site, so the loops unroll and acc stays in registers.
LOWBIT_INLINE void tile(const QGemmArgs& a, const int NCH, int i0, int rows, int j0, int cols) {
  const int nkb = qk4(a.k) / 4;
  const int64_t xs = int64_t{a.n} * 4;
  const uint8_t* xp = a.x + int64_t{j0} * 4;
  const int8_t* w0 = a.w + int64_t{i0} * a.ldw;
  const int8_t* w1 = rows > 1 ? w0 + a.ldw : w0;
  const int last_cols = cols - 4 * (NCH - 1);
  const __m128i last_mask = _mm_cmpgt_epi32(_mm_set1_epi32(last_cols), _mm_setr_epi32(0, 1, 2, 3));

  __m256i acc0[4], acc1[4];
#pragma GCC unroll 8
  for (int c = 0; c < NCH; ++c) acc0[c] = acc1[c] = _mm256_setzero_si256();
  for (int kb = 0; kb < nkb; ++kb, xp += xs) {
    int32_t w4;
    std::memcpy(&w4, w0 + 4 * kb, 4);
    const __m256i wv0 = _mm256_cvtepi8_epi16(_mm_set1_epi32(w4));
    std::memcpy(&w4, w1 + 4 * kb, 4);
    const __m256i wv1 = _mm256_cvtepi8_epi16(_mm_set1_epi32(w4));
#pragma GCC unroll 8
    for (int c = 0; c < NCH; ++c) {
      const __m128i x8 =
          c == NCH - 1 ? _mm_maskload_epi32(reinterpret_cast<const int*>(xp + 16 * c), last_mask)
                       : _mm_loadu_si128(reinterpret_cast<const __m128i*>(xp + 16 * c));
      const __m256i x16 = _mm256_cvtepu8_epi16(x8);
      acc0[c] = _mm256_add_epi32(acc0[c], _mm256_madd_epi16(x16, wv0));
      acc1[c] = _mm256_add_epi32(acc1[c], _mm256_madd_epi16(x16, wv1));
    }
  }

  // Fold pair sums: hadd(chunk c, chunk c+1) = [c.0 c.1 d.0 d.1 | c.2 c.3 d.2 d.3], then put the
  // 64-bit quarters in order 0 2 1 3: 8 consecutive columns.
  alignas(32) int32_t buf[2 * 16] = {};
#pragma GCC unroll 8
  for (int c = 0; c < NCH; c += 2) {
    const __m256i z = _mm256_setzero_si256();
    const __m256i h0 = _mm256_hadd_epi32(acc0[c], c + 1 < NCH ? acc0[c + 1] : z);
    const __m256i h1 = _mm256_hadd_epi32(acc1[c], c + 1 < NCH ? acc1[c + 1] : z);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(buf + 4 * c), _mm256_permute4x64_epi64(h0, 0xD8));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(buf + 16 + 4 * c), _mm256_permute4x64_epi64(h1, 0xD8));
  }
  finish_tile(a, buf, i0, rows, j0, cols);
}

void tile_x1(const QGemmArgs& a, int i0, int rows, int j0, int cols) { tile(a, 1, i0, rows, j0, cols); }
void tile_x2(const QGemmArgs& a, int i0, int rows, int j0, int cols) { tile(a, 2, i0, rows, j0, cols); }
void tile_x3(const QGemmArgs& a, int i0, int rows, int j0, int cols) { tile(a, 3, i0, rows, j0, cols); }
void tile_x4(const QGemmArgs& a, int i0, int rows, int j0, int cols) { tile(a, 4, i0, rows, j0, cols); }

using TileFn = void (*)(const QGemmArgs&, int, int, int, int);
constexpr TileFn kTiles[4] = {tile_x1, tile_x2, tile_x3, tile_x4};

}  // namespace

void qgemm_u8s8_2x16__avx2(const QGemmArgs& a) {
  for (int j0 = 0; j0 < a.n; j0 += 16) {
    const int cols = a.n - j0 < 16 ? a.n - j0 : 16;
    for (int i0 = 0; i0 < a.m; i0 += 2)
      kTiles[(cols + 3) / 4 - 1](a, i0, a.m - i0 < 2 ? 1 : 2, j0, cols);
  }
}

}  // namespace lowbit
