// AVX-512 requantization of int32 accumulators, bit-exact to requantize_ref (kernels/ref/
// requant_ref.h), shared by the VNNI GEMM and the fused conv/pool kernels. Header-only and
// always inlined: include it only from files compiled with AVX-512 flags.
// Variants: fixedpoint (both roundings) and float here; callers run divide through requantize_ref.
#pragma once

#include <immintrin.h>

#include "kernels/avx512/common_avx512.h"
#include "kernels/ref/requant_ref.h"

namespace lowbit {
namespace avx512 {

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
LOWBIT_INLINE void lane_requant(LaneRequant& q, const RequantParams& p, RequantVariant variant, __m512i q31, __m512i shift,
                                __m512 scale) {
  q.has_left = q.one_shift = false;
  q.flo = _mm512_set1_ps(static_cast<float>(p.lo - p.z_out));
  q.fhi = _mm512_set1_ps(static_cast<float>(p.hi - p.z_out));
  q.scale = scale;
  if (!is_fixedpoint(variant)) return;
  const bool nearest = variant == RequantVariant::fixedpoint;
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
LOWBIT_INLINE void row_requant(LaneRequant& q, const RequantParams& p, RequantVariant variant, int i) {
  const bool fx = is_fixedpoint(variant), fl = is_float(variant);
  lane_requant(q, p, variant, _mm512_set1_epi32(fx ? p.q31[i] : 0), _mm512_set1_epi32(fx ? p.shift[i] : 0),
                      _mm512_set1_ps(fl ? p.scale[i] : 0.0f));
}

// Lane l holds output channel i0 + l (lanes outside `live` get harmless zeros).
LOWBIT_INLINE void channel_requant(LaneRequant& q, const RequantParams& p, RequantVariant variant, int i0,
                                   __mmask16 live) {
  const bool fx = is_fixedpoint(variant), fl = is_float(variant);
  const __m512i zero = _mm512_setzero_si512();
  lane_requant(q, p, variant, fx ? _mm512_maskz_loadu_epi32(live, p.q31 + i0) : zero,
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

}  // namespace avx512
}  // namespace lowbit
