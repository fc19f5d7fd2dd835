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
// Requantization (avx512/requant_avx512.h): fixedpoint (both roundings) and float in SIMD on
// 16-lane vectors, then four vectors of a row are saturated, offset and clamped together as 64
// bytes; divide falls back to requantize_ref per element (exact, slower).
// GCC 12 warns falsely about _mm512_undefined_* inside inlined AVX-512 intrinsics (GCC bug
// 105593, fixed in GCC 13); the pragma must precede the header.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "kernels/qkernels.h"
#include "kernels/avx512/requant_avx512.h"

namespace lowbit {
namespace {

using namespace avx512;


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
      if (!rows_rq) row_requant(own, *a.rq, a.variant, i);
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
    for (int c = 0; c < nch; ++c) channel_requant(q[c], *a.rq, a.variant, i0 + 16 * c, live[c]);
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
    for (int i = 0; i < a.m; ++i) row_requant(rows_rq[i], *a.rq, a.variant, i);
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
    row_requant(q, rp, a.variant, ch);
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
