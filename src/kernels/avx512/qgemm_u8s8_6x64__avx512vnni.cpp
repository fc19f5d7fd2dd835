// AVX-512 VNNI u8 x s8 GEMM with fused requantization, bit-exact to qgemm_u8s8_ref (contract in
// kernels/qkernels.h), and the int32 max pool + requantization that shares its requant code.
// Not here: im2col, threading, the other ISAs.
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

// Requantization constants of 16 lanes. In the row tiles every lane holds the same output
// channel; in the small-n tiles (tile_t) each lane holds its own channel. So every shift is a
// per-lane variable shift (vpsllvd, vpsravd, vpsravq: as fast as the uniform ones here).
struct LaneRequant {
  __m512i q31_even, q31_odd;  // multiplier in the low dword of each 64-bit lane, for vpmuldq
  __m512i left, right;        // shift counts per 32-bit lane
  __m512i sat_hi, sat_lo;     // x * 2^left saturates outside [sat_lo, sat_hi]
  __m512i nudge;              // srdhm's 2^30 (nearest) or 0, per 64-bit lane
  __m512i round_even, round_odd, shift_even, shift_odd;  // the one-shift form, per 64-bit lane
  __m512i rmask, rhalf;       // rounding divide by 2^right
  __m512 scale, flo, fhi;
  bool has_left;   // some lane shifts left
  bool one_shift;  // the fixedpoint result is one 64-bit rounding shift (see requant16)
};

LOWBIT_INLINE bool is_fixedpoint(RequantVariant v) {
  return v == RequantVariant::fixedpoint || v == RequantVariant::fixedpoint_floor;
}
LOWBIT_INLINE bool is_float(RequantVariant v) {
  return v == RequantVariant::float_nearest || v == RequantVariant::float_floor;
}

// Fills q from per-lane q31, shift (fixedpoint) and scale (float) vectors. Only the fields the
// variant reads are set: q is 1 KiB, and zeroing or copying it cost more than the rest at batch 1.
LOWBIT_INLINE void lane_requant(LaneRequant& q, const QGemmArgs& a, __m512i q31, __m512i shift, __m512 scale) {
  const RequantParams& p = *a.rq;
  q.has_left = q.one_shift = false;
  q.flo = _mm512_set1_ps(static_cast<float>(p.lo - p.z_out));
  q.fhi = _mm512_set1_ps(static_cast<float>(p.hi - p.z_out));
  q.scale = scale;
  if (!is_fixedpoint(a.variant)) return;
  const bool nearest = a.variant == RequantVariant::fixedpoint;
  const __m512i zero = _mm512_setzero_si512(), one32 = _mm512_set1_epi32(1);
  q.left = _mm512_max_epi32(shift, zero);
  q.right = _mm512_max_epi32(_mm512_sub_epi32(zero, shift), zero);
  q.has_left = _mm512_test_epi32_mask(q.left, q.left) != 0;
  q.sat_hi = _mm512_srav_epi32(_mm512_set1_epi32(INT32_MAX), q.left);
  q.sat_lo = _mm512_srav_epi32(_mm512_set1_epi32(INT32_MIN), q.left);
  q.q31_even = q31;
  q.q31_odd = _mm512_srli_epi64(q31, 32);
  q.nudge = _mm512_set1_epi64(nearest ? (int64_t{1} << 30) : 0);
  q.rmask = _mm512_sub_epi32(_mm512_sllv_epi32(one32, q.right), one32);  // 2^right - 1
  q.rhalf = _mm512_srli_epi32(q.rmask, 1);
  // floor: floor(x*q31 / 2^(31+right)) exactly. nearest with lo >= z_out (fused ReLU): for
  // y = srdhm(x) >= 0, rdivpot(y) = floor((x*q31 + 2^30 + 2^(30+right)) / 2^(31+right))
  // (nested floors of integer quotients compose); for y < 0 both that and rdivpot(y) are <= 0
  // and clamp to lo - z_out >= 0 alike.
  q.one_shift = !nearest || p.lo >= p.z_out;
  const __m512i right_even = _mm512_and_si512(q.right, _mm512_set1_epi64(0xFFFFFFFF));
  const __m512i right_odd = _mm512_srli_epi64(q.right, 32);
  auto round64 = [&](__m512i r) {  // nearest: 2^30 + (r > 0 ? 2^(30 + r) : 0); floor: 0
    if (!nearest) return zero;
    const __m512i up = _mm512_sllv_epi64(_mm512_set1_epi64(1), _mm512_add_epi64(r, _mm512_set1_epi64(30)));
    return _mm512_add_epi64(_mm512_set1_epi64(int64_t{1} << 30), _mm512_maskz_mov_epi64(_mm512_test_epi64_mask(r, r), up));
  };
  q.round_even = round64(right_even);
  q.round_odd = round64(right_odd);
  q.shift_even = _mm512_add_epi64(right_even, _mm512_set1_epi64(31));
  q.shift_odd = _mm512_add_epi64(right_odd, _mm512_set1_epi64(31));
}

// Every lane holds output channel i.
LOWBIT_INLINE void row_requant(LaneRequant& q, const QGemmArgs& a, int i) {
  const RequantParams& p = *a.rq;
  const bool fx = is_fixedpoint(a.variant), fl = is_float(a.variant);
  lane_requant(q, a, _mm512_set1_epi32(fx ? p.q31[i] : 0), _mm512_set1_epi32(fx ? p.shift[i] : 0),
                      _mm512_set1_ps(fl ? p.scale[i] : 0.0f));
}

// Lane l holds output channel i0 + l (lanes outside `live` get harmless zeros).
LOWBIT_INLINE void channel_requant(LaneRequant& q, const QGemmArgs& a, int i0, __mmask16 live) {
  const RequantParams& p = *a.rq;
  const bool fx = is_fixedpoint(a.variant), fl = is_float(a.variant);
  const __m512i zero = _mm512_setzero_si512();
  lane_requant(q, a, fx ? _mm512_maskz_loadu_epi32(live, p.q31 + i0) : zero,
                      fx ? _mm512_maskz_loadu_epi32(live, p.shift + i0) : zero,
                      fl ? _mm512_maskz_loadu_ps(live, p.scale + i0) : _mm512_setzero_ps());
}

// requant(acc) of 16 accumulators (bias added), without z_out; the caller clamps.
LOWBIT_INLINE __m512i requant16(__m512i v, const LaneRequant& q, RequantVariant variant) {
  if (is_float(variant)) {
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
    v = _mm512_sllv_epi32(v, q.left);
    v = _mm512_mask_mov_epi32(v, over, _mm512_set1_epi32(INT32_MAX));
    v = _mm512_mask_mov_epi32(v, under, _mm512_set1_epi32(INT32_MIN));
  }
  __m512i even = _mm512_mul_epi32(v, q.q31_even);  // 64-bit x*q31 of lanes 0, 2, ..
  __m512i odd = _mm512_mul_epi32(_mm512_srli_epi64(v, 32), q.q31_odd);  // lanes 1, 3, ..
  if (q.one_shift) {  // see lane_requant; the result fits int32, so its low dword is exact
    even = _mm512_srav_epi64(_mm512_add_epi64(even, q.round_even), q.shift_even);
    odd = _mm512_srav_epi64(_mm512_add_epi64(odd, q.round_odd), q.shift_odd);
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
  v = _mm512_srav_epi32(v, q.right);
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
// rows_rq: the requantization constants of every row of the GEMM, or null to compute them here.
__attribute__((noinline)) void finish_tile(const QGemmArgs& a, const int32_t* buf, int i0, int rows,
                                           int j0, int cols, const LaneRequant* rows_rq) {
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
        // Per 16 columns: a tile that crosses an image boundary crosses it in one chunk at most.
        const int jc = j0 + 16 * c;
        const bool run = p <= 0 || jc % p + count <= p;
        const int64_t at = p <= 0 ? jc : int64_t{jc / p} * a.ldc_image + jc % p;
        if (run && count == 16) {  // plain store: a masked one costs several on some CPUs
          _mm512_storeu_si512(row + at, v);
        } else if (run) {
          _mm512_mask_storeu_epi32(row + at, static_cast<__mmask16>((1u << count) - 1), v);
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
      LaneRequant own;
      if (!rows_rq) row_requant(own, a, i);
      const LaneRequant& q = rows_rq ? rows_rq[i] : own;
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
                        int cols, const LaneRequant* rows_rq) {
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
  finish_tile(a, buf, i0, rows, j0, cols, rows_rq);
}

void tile_6x1(const QGemmArgs& a, int i0, int rows, int j0, int cols, const LaneRequant* q) { tile(a, 6, 1, i0, rows, j0, cols, q); }
void tile_6x2(const QGemmArgs& a, int i0, int rows, int j0, int cols, const LaneRequant* q) { tile(a, 6, 2, i0, rows, j0, cols, q); }
void tile_6x3(const QGemmArgs& a, int i0, int rows, int j0, int cols, const LaneRequant* q) { tile(a, 6, 3, i0, rows, j0, cols, q); }
void tile_6x4(const QGemmArgs& a, int i0, int rows, int j0, int cols, const LaneRequant* q) { tile(a, 6, 4, i0, rows, j0, cols, q); }
void tile_4x1(const QGemmArgs& a, int i0, int rows, int j0, int cols, const LaneRequant* q) { tile(a, 4, 1, i0, rows, j0, cols, q); }
void tile_4x2(const QGemmArgs& a, int i0, int rows, int j0, int cols, const LaneRequant* q) { tile(a, 4, 2, i0, rows, j0, cols, q); }
void tile_4x3(const QGemmArgs& a, int i0, int rows, int j0, int cols, const LaneRequant* q) { tile(a, 4, 3, i0, rows, j0, cols, q); }
void tile_4x4(const QGemmArgs& a, int i0, int rows, int j0, int cols, const LaneRequant* q) { tile(a, 4, 4, i0, rows, j0, cols, q); }

using TileFn = void (*)(const QGemmArgs&, int, int, int, int, const LaneRequant*);
constexpr TileFn kTiles6[4] = {tile_6x1, tile_6x2, tile_6x3, tile_6x4};
constexpr TileFn kTiles4[4] = {tile_4x1, tile_4x2, tile_4x3, tile_4x4};

// ---- small n (batch-1 conv3, fc1, fc2): C^T = X^T W^T ----
// With n < 16 the row tiles above would compute 16 columns per zmm for n real ones. Here the
// lanes are 16 output channels instead: W^T comes packed as [K4/4][M16][4] (QGemmArgs::wt) and
// each column of X broadcasts its 4 bytes per k-block. Used only where C(i, j) lies at
// out + j * ldc_image + i (ldc = 1, cols_per_image = 1), so 16 channels store contiguously.

// Adds bias_eff to columns j0..j0+cols-1 (rows of buf, 64 channels each) of channels
// i0..i0+chans-1 and stores them: raw int32, or requantized to u8.
__attribute__((noinline)) void finish_tile_t(const QGemmArgs& a, const int32_t* buf, int j0, int cols,
                                             int i0, int chans) {
  const int nch = (chans + 15) / 16;
  __mmask16 live[4];
  __m512i bias[4];
  for (int c = 0; c < 4; ++c) {
    const int count = chans - 16 * c < 0 ? 0 : (chans - 16 * c < 16 ? chans - 16 * c : 16);
    live[c] = static_cast<__mmask16>((1u << count) - 1);
    bias[c] = _mm512_maskz_loadu_epi32(live[c], a.bias + i0 + 16 * c);
  }
  if (a.c_i32) {
    for (int r = 0; r < cols; ++r)
      for (int c = 0; c < nch; ++c)
        _mm512_mask_storeu_epi32(a.c_i32 + int64_t{j0 + r} * a.ldc_image + i0 + 16 * c, live[c],
                                 _mm512_add_epi32(_mm512_load_si512(buf + r * 64 + 16 * c), bias[c]));
    return;
  }
  const RequantParams& rp = *a.rq;
  const __m512i z16 = _mm512_set1_epi16(static_cast<int16_t>(rp.z_out));
  const __m512i lo8 = _mm512_set1_epi8(static_cast<char>(rp.lo)), hi8 = _mm512_set1_epi8(static_cast<char>(rp.hi));
  const __mmask64 mask = chans == 64 ? ~__mmask64{0} : (__mmask64{1} << chans) - 1;
  const bool divide = a.variant == RequantVariant::divide_nearest || a.variant == RequantVariant::divide_floor;
  LaneRequant q[4];
  if (!divide)
    for (int c = 0; c < nch; ++c) channel_requant(q[c], a, i0 + 16 * c, live[c]);
  for (int r = 0; r < cols; ++r) {
    uint8_t* out = a.c_u8 + int64_t{j0 + r} * a.ldc_image + i0;
    if (divide) {  // scalar, exact
      for (int t = 0; t < chans; ++t) {
        const uint32_t acc = static_cast<uint32_t>(buf[r * 64 + t]) + static_cast<uint32_t>(a.bias[i0 + t]);
        out[t] = requantize_ref(static_cast<int32_t>(acc), rp, a.variant, i0 + t);
      }
      continue;
    }
    __m512i v[4];
    for (int c = 0; c < 4; ++c)
      v[c] = c < nch ? requant16(_mm512_add_epi32(_mm512_load_si512(buf + r * 64 + 16 * c), bias[c]), q[c], a.variant)
                     : _mm512_setzero_si512();
    _mm512_mask_storeu_epi8(out, mask, clamp_pack64(v[0], v[1], v[2], v[3], z16, lo8, hi8));
  }
}

// Columns j0..j0+cols-1 (cols <= NR) times channels i0..i0+chans-1 (16*(NCH-1) < chans <= 16*NCH,
// i0 a multiple of 16, so the NCH loads of W^T stay inside its M16 padding).
LOWBIT_INLINE void tile_t(const QGemmArgs& a, const int NR, const int NCH, int j0, int cols, int i0, int chans) {
  const int nkb = qk4(a.k) / 4;
  const int64_t ws = int64_t{(a.m + 15) & ~15} * 4, xs = int64_t{a.n} * 4;
  const int8_t* wp = a.wt + int64_t{i0} * 4;
  const uint8_t* xp = a.x + int64_t{j0} * 4;
  __m512i acc[4][4];
  #pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
    #pragma GCC unroll 8
    for (int c = 0; c < NCH; ++c) acc[r][c] = _mm512_setzero_si512();
  for (int kb = 0; kb < nkb; ++kb, wp += ws, xp += xs) {
    __m512i wv[4];
    #pragma GCC unroll 8
    for (int c = 0; c < NCH; ++c) wv[c] = _mm512_loadu_si512(wp + 64 * c);
    #pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      int32_t x4;
      std::memcpy(&x4, xp + 4 * (r < cols ? r : 0), 4);
      const __m512i xb = _mm512_set1_epi32(x4);
      #pragma GCC unroll 8
      for (int c = 0; c < NCH; ++c) acc[r][c] = _mm512_dpbusd_epi32(acc[r][c], xb, wv[c]);
    }
  }
  alignas(64) int32_t buf[4 * 64];
  #pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
    #pragma GCC unroll 8
    for (int c = 0; c < NCH; ++c) _mm512_store_si512(buf + r * 64 + 16 * c, acc[r][c]);
  finish_tile_t(a, buf, j0, cols, i0, chans);
}

void tile_t1x1(const QGemmArgs& a, int j0, int cols, int i0, int chans) { tile_t(a, 1, 1, j0, cols, i0, chans); }
void tile_t1x2(const QGemmArgs& a, int j0, int cols, int i0, int chans) { tile_t(a, 1, 2, j0, cols, i0, chans); }
void tile_t1x3(const QGemmArgs& a, int j0, int cols, int i0, int chans) { tile_t(a, 1, 3, j0, cols, i0, chans); }
void tile_t1x4(const QGemmArgs& a, int j0, int cols, int i0, int chans) { tile_t(a, 1, 4, j0, cols, i0, chans); }
void tile_t4x1(const QGemmArgs& a, int j0, int cols, int i0, int chans) { tile_t(a, 4, 1, j0, cols, i0, chans); }
void tile_t4x2(const QGemmArgs& a, int j0, int cols, int i0, int chans) { tile_t(a, 4, 2, j0, cols, i0, chans); }
void tile_t4x3(const QGemmArgs& a, int j0, int cols, int i0, int chans) { tile_t(a, 4, 3, j0, cols, i0, chans); }
void tile_t4x4(const QGemmArgs& a, int j0, int cols, int i0, int chans) { tile_t(a, 4, 4, j0, cols, i0, chans); }

using TileTFn = void (*)(const QGemmArgs&, int, int, int, int);
constexpr TileTFn kTilesT1[4] = {tile_t1x1, tile_t1x2, tile_t1x3, tile_t1x4};
constexpr TileTFn kTilesT4[4] = {tile_t4x1, tile_t4x2, tile_t4x3, tile_t4x4};

// The transposed form pays when it issues fewer vpdpbusd per k-block: n columns x ceil(m/16)
// channel vectors against about m rows x ceil(n/16) column vectors.
bool small_n(const QGemmArgs& a) {
  return a.wt && a.ldc == 1 && a.cols_per_image == 1 && a.n < 16 &&
         int64_t{a.n} * ((a.m + 15) / 16) < int64_t{a.m} * ((a.n + 15) / 16);
}

}  // namespace

void qgemm_u8s8_6x64__avx512vnni(const QGemmArgs& a) {
  if (small_n(a)) {
    // Channels outer: the 64-channel slice of W^T (K4 * 64 bytes) stays in L1 across columns.
    for (int i0 = 0; i0 < a.m; i0 += 64) {
      const int chans = a.m - i0 < 64 ? a.m - i0 : 64;
      const int nch = (chans + 15) / 16;
      int j0 = 0;
      for (; j0 + 4 <= a.n; j0 += 4) kTilesT4[nch - 1](a, j0, 4, i0, chans);
      for (; j0 < a.n; ++j0) kTilesT1[nch - 1](a, j0, 1, i0, chans);
    }
    return;
  }
  // A GEMM of few rows and many column tiles (conv1, conv2) requantizes every row again in every
  // column tile: build each row's constants once.
  const bool divide = a.variant == RequantVariant::divide_nearest || a.variant == RequantVariant::divide_floor;
  LaneRequant rows_rq[16];
  const bool hoist = a.c_u8 && !divide && a.m <= 16 && a.n > 64;
  if (hoist)
    for (int i = 0; i < a.m; ++i) row_requant(rows_rq[i], a, i);
  // Columns outer: the 64-column slice of X (K4 * 64 bytes) stays in L1 across row tiles.
  for (int j0 = 0; j0 < a.n; j0 += 64) {
    const int cols = a.n - j0 < 64 ? a.n - j0 : 64;
    const int nch = (cols + 15) / 16;
    for (int i0 = 0; i0 < a.m;) {
      const int left = a.m - i0;
      // 4-row tiles for 1-4 and 8 remaining rows (16 = 6+6+4, 10 = 6+4, 8 = 4+4), else 6.
      const bool four = left <= 4 || left == 8;
      const int rows = four ? (left < 4 ? left : 4) : (left < 6 ? left : 6);
      (four ? kTiles4 : kTiles6)[nch - 1](a, i0, rows, j0, cols, hoist ? rows_rq : nullptr);
      i0 += rows;
    }
  }
}

// The engine's conv -> 2x2 max pool with the pool on the int32 accumulators (contract in
// kernels/qkernels.h): here because it shares the requantization above. Rows of at most 32
// accumulators (LeNet's 28 and 10): two rows in two zmm each, the vertical max, the pair max by
// even/odd permutes, one requant16 for up to 16 pooled values. Channels outer, so that a pooled
// row's 16-byte store may run into rows written later (its plane's next rows, the image's later
// channels); where it would pass the image's last plane it is masked.
void qmaxpool2x2_requant_i32__avx512(const QPoolRequantArgs& a) {
  const bool divide = a.variant == RequantVariant::divide_nearest || a.variant == RequantVariant::divide_floor;
  const int oh = a.h / 2, ow = a.w / 2;
  if (divide || 2 * ow > 32) {
    qmaxpool2x2_requant_i32_ref(a);
    return;
  }
  const RequantParams& rp = *a.rq;
  QGemmArgs ga;  // row_requant reads rq and variant
  ga.rq = a.rq;
  ga.variant = a.variant;
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512i z16 = _mm512_set1_epi16(static_cast<int16_t>(rp.z_out));
  const __m512i lo8 = _mm512_set1_epi8(static_cast<char>(rp.lo)), hi8 = _mm512_set1_epi8(static_cast<char>(rp.hi));
  const int n = 2 * ow;  // accumulators of a row that the pool reads
  const __mmask16 lo = static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1);
  const __mmask16 hi = static_cast<__mmask16>(n <= 16 ? 0 : (1u << (n - 16)) - 1);
  const __mmask16 outm = static_cast<__mmask16>((1u << ow) - 1);
  const int64_t plane_in = int64_t{a.h} * a.w, plane_out = int64_t{oh} * ow;
  for (int ch = 0; ch < a.c; ++ch) {
    LaneRequant q;
    row_requant(q, ga, ch);
    for (int b = 0; b < a.nb; ++b) {
      const int32_t* src = a.in + (int64_t{b} * a.c + ch) * plane_in;
      uint8_t* dst = a.out + (int64_t{b} * a.c + ch) * plane_out;
      for (int y = 0; y < oh; ++y) {
        const int32_t* r0 = src + int64_t{2 * y} * a.w;
        const int32_t* r1 = r0 + a.w;
        const __m512i m0 = _mm512_max_epi32(_mm512_maskz_loadu_epi32(lo, r0), _mm512_maskz_loadu_epi32(lo, r1));
        const __m512i m1 = _mm512_max_epi32(_mm512_maskz_loadu_epi32(hi, r0 + 16), _mm512_maskz_loadu_epi32(hi, r1 + 16));
        const __m512i pooled = _mm512_max_epi32(_mm512_permutex2var_epi32(m0, even, m1), _mm512_permutex2var_epi32(m0, odd, m1));
        const __m512i v = requant16(pooled, q, a.variant);
        const __m128i bytes = _mm512_castsi512_si128(clamp_pack64(v, v, v, v, z16, lo8, hi8));
        // Unmasked when the 16 bytes stay inside this image's planes (of this and later channels).
        if ((int64_t{ch} * plane_out + int64_t{y} * ow + 16) <= int64_t{a.c} * plane_out)
          _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + y * ow), bytes);
        else
          _mm_mask_storeu_epi8(dst + y * ow, outm, bytes);
      }
    }
  }
}

}  // namespace lowbit
