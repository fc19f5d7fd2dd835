// Stride-1 unpadded convolution to int32 without an im2col matrix (implicit GEMM) with AVX-512
// VNNI and VBMI, equal to qconv_i32_ref (contract in kernels/qkernels.h, QConvI32Args). Compiled
// with -mavx512vbmi (CMakeLists.txt); dispatch.cpp uses it only when cpuid shows VBMI.
//
// Tile: 16 output channels (or 8 for a last block) x 16 consecutive output pixels n0..n0+15 of
// one image, counted across output rows (n = oy*ow + ox). For tap (ci, ky, kx) pixel n reads input
// byte off(tap) + (n/ow)*w + n%ow: relative to the window that starts at row n0/ow, one fixed
// pattern per tile (qconv_i32_fits keeps it inside 64 bytes). So the packed operand of a k-block
// (four taps: byte 4l + t = tap t at pixel n0 + l) is one 64-byte load and one vpermb where the
// four taps lie close together (LeNet's conv2: 33 of 38 k-blocks; a 64-byte load that splits
// cache lines issues at half the rate of an aligned one here, so the fewer the better), else four
// loads, two vpermi2b (taps 0-1 and 2-3, one shared index vector) and an OR. It feeds 16 vpdpbusd
// whose weight quads come as memory broadcasts from the W^T packing [K4/4][M16][4].
// Accumulators start at bias_eff.
// GCC 12 warns falsely inside inlined AVX-512 intrinsics (bug 105593); the pragma must precede the header.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernels/avx512/common_avx512.h"
#include "kernels/qkernels.h"

namespace lowbit {
namespace {

using avx512::dpbusd_bcast;

constexpr int kMaxTaps = 1024 / 4, kMaxTiles = 1024 / 16;  // qconv_i32_fits' limits

// How a k-block's operand is built. One window: the distance from its lowest to its highest tap
// plus the widest pixel pattern stays below 64, so one load at the lowest tap and one vpermb
// (pattern + each tap's distance from it) give the operand. Else (taps in different channel
// planes, or far apart) four loads and two vpermi2b, one table per tap.
struct KBlock {
  int32_t lo;      // lowest tap offset (one window), or -1: four loads
  uint32_t delta;  // byte t = offset of tap t - lo, added to every pixel's index quad
};

// Channels m0..m0+MB-1 (only the first `chans` stored) x pixels n0..n0+cols-1 of one image.
// idx4: the four-load index (odd taps + 64), idx1: the pixel pattern alone.
template <int MB>
LOWBIT_INLINE void tile(const QConvI32Args& a, const uint8_t* window, const int32_t (*off)[4], const KBlock* kbs,
                        int nkb, __m512i idx4, __m512i idx1, const int32_t* wt, int64_t wstride, int m0, int chans,
                        int32_t* out, int64_t plane, int cols) {
  const __mmask64 even_taps = 0x3333333333333333ull, odd_taps = 0xCCCCCCCCCCCCCCCCull;
  __m512i acc[MB];
  #pragma GCC unroll 16
  for (int i = 0; i < MB; ++i) acc[i] = _mm512_set1_epi32(a.bias[m0 + (i < chans ? i : 0)]);
  for (int kb = 0; kb < nkb; ++kb, wt += wstride) {
    __m512i x;
    if (kbs[kb].lo >= 0) {
      const __m512i idx = _mm512_add_epi32(idx1, _mm512_set1_epi32(static_cast<int>(kbs[kb].delta)));
      x = _mm512_permutexvar_epi8(idx, _mm512_loadu_si512(window + kbs[kb].lo));
    } else {
      const __m512i t0 = _mm512_loadu_si512(window + off[kb][0]), t1 = _mm512_loadu_si512(window + off[kb][1]);
      const __m512i t2 = _mm512_loadu_si512(window + off[kb][2]), t3 = _mm512_loadu_si512(window + off[kb][3]);
      x = _mm512_or_si512(_mm512_maskz_permutex2var_epi8(even_taps, t0, idx4, t1),
                          _mm512_maskz_permutex2var_epi8(odd_taps, t2, idx4, t3));
    }
    #pragma GCC unroll 16
    for (int i = 0; i < MB; ++i) acc[i] = dpbusd_bcast(acc[i], x, wt + i);
  }
  // Constant indices only: a loop to `chans` would index acc at run time and keep it in memory.
  const __mmask16 live = static_cast<__mmask16>(cols >= 16 ? 0xFFFF : (1u << cols) - 1);
  #pragma GCC unroll 16
  for (int i = 0; i < MB; ++i) {
    if (i >= chans) break;
    if (cols == 16)
      _mm512_storeu_si512(out + i * plane, acc[i]);
    else
      _mm512_mask_storeu_epi32(out + i * plane, live, acc[i]);
  }
}

}  // namespace

void qconv_i32__avx512vbmi(const QConvI32Args& a) {
  const int oh = a.h - a.kh + 1, ow = a.w - a.kw + 1, pixels = oh * ow;
  const int k = a.c * a.kh * a.kw, nkb = qk4(k) / 4, m16 = (a.m + 15) & ~15;
  // Input offset of tap t of each k-block (taps past k read tap 0: their weights are zero),
  // stepped without division: at batch 1 this setup is a noticeable part of the call.
  int32_t off[kMaxTaps][4];
  for (int p = 0, ci = 0, ky = 0, kx = 0; p < 4 * nkb; ++p) {
    off[p / 4][p % 4] = p < k ? (ci * a.h + ky) * a.w + kx : 0;
    if (++kx == a.kw) kx = 0, ++ky;
    if (ky == a.kh) ky = 0, ++ci;
  }
  // Per tile of 16 pixels n0..n0+15: where its window starts (row n0 / ow) and the window byte
  // rel(l) of pixel n0 + l, as the vpermi2b index of tap t at byte 4l + t (odd taps read the
  // second table: + 64). Pixels past the image repeat rel(0).
  const int tiles = (pixels + 15) / 16;
  int32_t row_start[kMaxTiles];
  __m512i idx4[kMaxTiles], idx1[kMaxTiles];
  int max_rel = 0;  // the widest pixel pattern of any tile
  for (int j = 0, y = 0, x = 0; j < tiles; ++j) {  // (y, x): pixel 16j
    row_start[j] = y * a.w;
    alignas(64) int32_t rel[16];
    for (int l = 0, ry = 0, rx = x; l < 16; ++l) {
      rel[l] = 16 * j + l < pixels ? ry * a.w + rx : rel[0];
      max_rel = rel[l] > max_rel ? rel[l] : max_rel;
      if (++rx == ow) rx = 0, ++ry;
    }
    idx1[j] = _mm512_mullo_epi32(_mm512_load_si512(rel), _mm512_set1_epi32(0x01010101));
    idx4[j] = _mm512_add_epi32(idx1[j], _mm512_set1_epi32(0x40004000));
    for (int l = 0; l < 16; ++l)
      if (++x == ow) x = 0, ++y;
  }
  KBlock kbs[kMaxTaps];
  for (int kb = 0; kb < nkb; ++kb) {
    int lo = off[kb][0], hi = off[kb][0];
    for (int t = 1; t < 4; ++t) lo = off[kb][t] < lo ? off[kb][t] : lo, hi = off[kb][t] > hi ? off[kb][t] : hi;
    if (hi - lo + max_rel > 63) {
      kbs[kb].lo = -1;
      continue;
    }
    kbs[kb].lo = lo;
    kbs[kb].delta = 0;
    for (int t = 0; t < 4; ++t) kbs[kb].delta |= static_cast<uint32_t>(off[kb][t] - lo) << (8 * t);
  }
  const int64_t wstride = int64_t{m16};  // int32 quads from one k-block of W^T to the next
  for (int b = 0; b < a.nb; ++b) {
    const uint8_t* img = a.in + b * a.in_bstride;
    int32_t* out = a.out + int64_t{b} * a.m * pixels;
    for (int m0 = 0; m0 < a.m; m0 += 16) {
      const int chans = a.m - m0 < 16 ? a.m - m0 : 16;
      const int32_t* wt = reinterpret_cast<const int32_t*>(a.weight_t) + m0;
      for (int j = 0; j < tiles; ++j) {
        const int cols = pixels - 16 * j < 16 ? pixels - 16 * j : 16;
        int32_t* o = out + int64_t{m0} * pixels + 16 * j;
        if (chans > 8)
          tile<16>(a, img + row_start[j], off, kbs, nkb, idx4[j], idx1[j], wt, wstride, m0, chans, o, pixels, cols);
        else
          tile<8>(a, img + row_start[j], off, kbs, nkb, idx4[j], idx1[j], wt, wstride, m0, chans, o, pixels, cols);
      }
    }
  }
}

}  // namespace lowbit
