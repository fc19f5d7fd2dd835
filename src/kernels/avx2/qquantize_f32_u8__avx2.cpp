// Input quantization float -> u8, AVX2, byte-equal to qquantize_f32_u8_ref (contract in
// kernels/qkernels.h): the same IEEE float32 division, vroundps to nearest-even (what
// round_half_even computes), NaN -> z, clamp. Also used by the AVX-512 table.
#include <immintrin.h>

#include "kernels/qkernels.h"

namespace lowbit {

void qquantize_f32_u8__avx2(const float* x, int64_t n, const QQuantizeArgs& p, uint8_t* out) {
  const __m256 scale = _mm256_set1_ps(p.scale), z = _mm256_set1_ps(static_cast<float>(p.z_u));
  const __m256 lo = _mm256_set1_ps(static_cast<float>(p.lo_u)), hi = _mm256_set1_ps(static_cast<float>(p.hi_u));
  const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                        0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m256i gather = _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    __m256 r = _mm256_round_ps(_mm256_div_ps(v, scale), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm256_andnot_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q), r);  // NaN -> 0
    r = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(r, z), lo), hi);
    __m256i b = _mm256_shuffle_epi8(_mm256_cvttps_epi32(r), pick);
    b = _mm256_permutevar8x32_epi32(b, gather);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out + i), _mm256_castsi256_si128(b));
  }
  if (i < n) qquantize_f32_u8_ref(x + i, n - i, p, out + i);
}

}  // namespace lowbit
