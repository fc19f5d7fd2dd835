// Direct stride-1 convolution -> 2x2 max pool -> requantization with AVX-512 VNNI and VBMI,
// byte-equal to qconv_maxpool_u8_ref (contract in kernels/qkernels.h, QConvPoolArgs). Compiled
// with -mavx512vbmi (CMakeLists.txt); dispatch.cpp uses it only when cpuid shows VBMI.
//
// The lanes hold output columns: 32 columns of one output row in two zmm of 16 int32. For tap
// group g (kx = 4g..4g+3 of kernel row ky) the u8 operand of column ox is the four input bytes
// ox+4g-pad .. ox+4g+3-pad of one input row: a single vpermb of that row (<= 64 bytes), with the
// masked-out bytes (outside the image) set to the pad value. Each operand feeds the two output
// rows of a pooled row that use that input row, times 6 output channels whose 4 weight bytes
// come as a memory broadcast: 12 independent accumulators ([output row][channel]) per 16-column
// chunk, started at bias_eff so that the max pool sees exactly the reference's sums. The pooled
// row (vertical max of the chunk, then the max of even and odd columns across both chunks) is
// requantized as 16 lanes and stored.
// No im2col matrix, no int32 plane: LeNet's conv1 read 25 bytes of im2col and wrote 4 bytes of
// int32 per output pixel before.
// GCC 12 warns falsely inside inlined AVX-512 intrinsics (bug 105593); the pragma must precede the header.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernels/avx512/common_avx512.h"
#include "kernels/avx512/requant_avx512.h"
#include "kernels/qkernels.h"

namespace lowbit {
namespace {

using namespace avx512;
constexpr int MB = kConvPoolBlock;

// The operand permutations of a call: byte 4l + t of chunk ch, group g is input column
// ox + 4g + t - pad (ox = 16ch + l); the bytes outside the image (or past kw) are masked.
struct Operands {
  __m512i idx[2][2];  // [g][chunk]
  __mmask64 inb[2][2];
};

// acc[j][i] += x * W(channel m0 + i, kernel row ky, tap group g) for the output rows j that use
// input row 2py + r - pad: J0 for output row 2py (ky = r), J1 for 2py + 1 (ky = r - 1).
// w: the block's packed weights at kernel row r (G * MB quads per kernel row).
template <int G, bool J0, bool J1>
LOWBIT_INLINE void taps(__m512i (&acc)[2][MB], const __m512i (&x)[G], const int32_t* w) {
  #pragma GCC unroll 8
  for (int g = 0; g < G; ++g) {
    if (J0)
      #pragma GCC unroll 8
      for (int i = 0; i < MB; ++i) acc[0][i] = dpbusd_bcast(acc[0][i], x[g], w + g * MB + i);
    if (J1)
      #pragma GCC unroll 8
      for (int i = 0; i < MB; ++i) acc[1][i] = dpbusd_bcast(acc[1][i], x[g], w + (g - G) * MB + i);
  }
}

// Output channels m0..m0+mb-1 (mb <= MB) of image b. KH: kernel rows; G: tap groups per kernel
// row (kw <= 4G). Both constant, so the kernel rows unroll and the 12 accumulators of one column
// chunk stay in registers with the operand permutations.
template <int KH, int G>
void block(const QConvPoolArgs& a, const Operands& op, int b, int m0, int mb, const LaneRequant* q) {
  const int oh = a.h + 2 * a.pad - KH + 1, ow = a.w + 2 * a.pad - a.kw + 1;
  const int ph = oh / 2, pw = ow / 2;
  const __m512i zv = _mm512_set1_epi8(static_cast<char>(a.pad_value));
  alignas(64) uint8_t pad_row[64];  // rows above and below the image read this
  _mm512_store_si512(pad_row, zv);
  const __mmask64 rowmask = a.w == 64 ? ~__mmask64{0} : (__mmask64{1} << a.w) - 1;
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const RequantParams& rp = *a.rq;
  const __m512i z16 = _mm512_set1_epi16(static_cast<int16_t>(rp.z_out));
  const __m512i lo8 = _mm512_set1_epi8(static_cast<char>(rp.lo)), hi8 = _mm512_set1_epi8(static_cast<char>(rp.hi));
  const __mmask16 outm = static_cast<__mmask16>((1u << pw) - 1);
  const bool divide = a.variant == RequantVariant::divide_nearest || a.variant == RequantVariant::divide_floor;
  constexpr int wrow = G * MB;  // quads per kernel row of one channel block
  const int32_t* wblock = reinterpret_cast<const int32_t*>(a.weight_packed) + int64_t{m0} * a.c * KH * G;
  const uint8_t* img = a.in + b * a.in_bstride;
  const int64_t plane = int64_t{a.h} * a.w;

  for (int py = 0; py < ph; ++py) {
    alignas(64) int32_t rows[2][MB][16];  // per chunk and channel: the max of rows 2py, 2py + 1
    for (int ch = 0; ch < 2; ++ch) {
      __m512i acc[2][MB];  // [output row 2py + j][channel], started at bias_eff
      #pragma GCC unroll 8
      for (int i = 0; i < MB; ++i) acc[0][i] = acc[1][i] = _mm512_set1_epi32(a.bias[m0 + (i < mb ? i : 0)]);
      const __m512i idx0 = op.idx[0][ch], idx1 = op.idx[G - 1][ch];
      const __mmask64 inb0 = op.inb[0][ch], inb1 = op.inb[G - 1][ch];
      for (int ci = 0; ci < a.c; ++ci) {
        const uint8_t* src = img + ci * plane;
        const int32_t* w = wblock + ci * KH * wrow;
        // Input row 2py + r - pad, r = 0..KH: r = 0 feeds output row 2py only, r = KH 2py + 1 only.
        #pragma GCC unroll 9
        for (int r = 0; r <= KH; ++r) {
          const int iy = 2 * py + r - a.pad;
          const __m512i row = _mm512_maskz_loadu_epi8(rowmask, iy >= 0 && iy < a.h ? src + int64_t{iy} * a.w : pad_row);
          __m512i x[G];
          x[0] = _mm512_mask_permutexvar_epi8(zv, inb0, idx0, row);
          if (G == 2) x[G - 1] = _mm512_mask_permutexvar_epi8(zv, inb1, idx1, row);
          if (r == 0)
            taps<G, true, false>(acc, x, w);
          else if (r == KH)
            taps<G, false, true>(acc, x, w + r * wrow);
          else
            taps<G, true, true>(acc, x, w + r * wrow);
        }
      }
      #pragma GCC unroll 8
      for (int i = 0; i < MB; ++i) _mm512_store_si512(rows[ch][i], _mm512_max_epi32(acc[0][i], acc[1][i]));
    }
    for (int i = 0; i < mb; ++i) {
      const __m512i c0 = _mm512_load_si512(rows[0][i]), c1 = _mm512_load_si512(rows[1][i]);
      const __m512i pooled = _mm512_max_epi32(_mm512_permutex2var_epi32(c0, even, c1), _mm512_permutex2var_epi32(c0, odd, c1));
      uint8_t* dst = a.out + ((int64_t{b} * a.m + m0 + i) * ph + py) * pw;
      if (divide) {  // scalar, exact: no SIMD integer division
        alignas(64) int32_t v[16];
        _mm512_store_si512(v, pooled);
        for (int px = 0; px < pw; ++px) dst[px] = requantize_ref(v[px], rp, a.variant, m0 + i);
        continue;
      }
      const __m512i v = requant16(pooled, q[i], a.variant);
      _mm_mask_storeu_epi8(dst, outm, _mm512_castsi512_si128(clamp_pack64(v, v, v, v, z16, lo8, hi8)));
    }
  }
}

using BlockFn = void (*)(const QConvPoolArgs&, const Operands&, int, int, int, const LaneRequant*);
template <int G>
constexpr BlockFn kBlocks[8] = {block<1, G>, block<2, G>, block<3, G>, block<4, G>,
                                block<5, G>, block<6, G>, block<7, G>, block<8, G>};

}  // namespace

void qconv_maxpool_u8__avx512vbmi(const QConvPoolArgs& a) {
  const bool divide = a.variant == RequantVariant::divide_nearest || a.variant == RequantVariant::divide_floor;
  Operands op;
  for (int g = 0; g < 2; ++g)
    for (int ch = 0; ch < 2; ++ch) {
      alignas(64) uint8_t ix[64];
      __mmask64 inb = 0;
      for (int e = 0; e < 64; ++e) {
        const int kx = 4 * g + e % 4, x = 16 * ch + e / 4 + kx - a.pad;
        const bool valid = kx < a.kw && x >= 0 && x < a.w;
        ix[e] = static_cast<uint8_t>(valid ? x : 0);
        if (valid) inb |= __mmask64{1} << e;
      }
      op.idx[g][ch] = _mm512_load_si512(ix);
      op.inb[g][ch] = inb;
    }
  for (int m0 = 0; m0 < a.m; m0 += MB) {
    const int mb = a.m - m0 < MB ? a.m - m0 : MB;
    LaneRequant q[MB];
    if (!divide)
      for (int i = 0; i < mb; ++i) row_requant(q[i], *a.rq, a.variant, m0 + i);
    const BlockFn run = (a.kw <= 4 ? kBlocks<1> : kBlocks<2>)[a.kh - 1];
    for (int b = 0; b < a.nb; ++b) run(a, op, b, m0, mb, q);
  }
}

}  // namespace lowbit
