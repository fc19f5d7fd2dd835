// 2x2 stride-2 max pooling of u8 planes, AVX2, byte-equal to qmaxpool2x2_u8_ref (contract in
// kernels/qkernels.h). Also used by the AVX-512 table. Not here: average pooling (ref only),
// pooling fused into a GEMM.
//
// With even h and w, output row t of the whole tensor (planes*h/2 rows of w/2) is made of input
// rows 2t and 2t+1, which are contiguous: [row 2t | row 2t+1] = in + t*2w. So the planes are
// treated as one long sequence of row pairs, and rows shorter than a vector (LeNet's 28 and 10)
// need no per-row tail: each step reads 32 bytes of both rows (vpmaxub), folds byte pairs into
// 16 outputs, and stores 16 bytes. Lanes past the row end hold garbage that lands in the next
// output row, which the next step overwrites; steps whose reads or writes would leave the
// tensor take the scalar path. Odd h or w: the reference.
#include <immintrin.h>

#include "kernels/qkernels.h"

namespace lowbit {

void qmaxpool2x2_u8__avx2(const uint8_t* in, int64_t planes, int h, int w, uint8_t* out) {
  if (h % 2 != 0 || w % 2 != 0) {
    qmaxpool2x2_u8_ref(in, planes, h, w, out);
    return;
  }
  const int ow = w / 2;
  const int64_t rows_out = planes * (h / 2);
  const int64_t in_size = planes * h * w, out_size = rows_out * ow;
  const __m256i low_bytes = _mm256_set1_epi16(0x00FF);
  for (int64_t t = 0; t < rows_out; ++t) {
    const uint8_t* r0 = in + t * 2 * w;
    const uint8_t* r1 = r0 + w;
    uint8_t* o = out + t * ow;
    for (int x = 0; x < ow; x += 16) {
      const bool fits = (r1 - in) + 2 * x + 32 <= in_size && (o - out) + x + 16 <= out_size;
      if (!fits) {
        const int end = ow - x < 16 ? ow : x + 16;
        for (int q = x; q < end; ++q) {
          uint8_t v = r0[2 * q];
          if (r0[2 * q + 1] > v) v = r0[2 * q + 1];
          if (r1[2 * q] > v) v = r1[2 * q];
          if (r1[2 * q + 1] > v) v = r1[2 * q + 1];
          o[q] = v;
        }
        continue;
      }
      const __m256i m = _mm256_max_epu8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r0 + 2 * x)),
                                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r1 + 2 * x)));
      // Pairs (2q, 2q+1) are the two bytes of 16-bit lane q.
      const __m256i pair_max = _mm256_max_epu16(_mm256_and_si256(m, low_bytes), _mm256_srli_epi16(m, 8));
      const __m256i packed = _mm256_packus_epi16(pair_max, pair_max);  // per 128-bit lane
      const __m256i ordered = _mm256_permute4x64_epi64(packed, 0x08);  // qwords 0, 2
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o + x), _mm256_castsi256_si128(ordered));
    }
  }
}

}  // namespace lowbit
