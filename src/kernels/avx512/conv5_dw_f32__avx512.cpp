// The weight gradient of a stride-1 5x5 convolution on NCHW images (ConvDwArgs in
// kernels/dispatch.h), AVX-512F: 16 output columns in the lanes (the last group of a row masked),
// up to 4 output channels x the 5 taps of one (c, ky) in 20 accumulators. Images go outermost so
// that one image's x and dy stay in L1 while every (channel block, c, ky) sweeps them; the
// accumulators live in a buffer of lane partial sums between images, summed across lanes once.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 bug 105593, before the header
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "core/aligned_vector.h"
#include "kernels/sgemm.h"

namespace lowbit {

namespace {

constexpr int K = 5;

// acc[OB][K] += over the image: dy rows of channels o..o+OB-1 times x rows c, oy + ky.
template <int OB>
void block(const ConvDwArgs& a, const float* x, const float* dy, int o, int c, int ky, __m512* part) {
  const int oh = a.h - K + 1, ow = a.w - K + 1;
  const int64_t plane = int64_t{oh} * ow;
  __m512 acc[OB][K];
#pragma GCC unroll 4
  for (int i = 0; i < OB; ++i)
#pragma GCC unroll 5
    for (int kx = 0; kx < K; ++kx) acc[i][kx] = part[(i * a.c * K) * K + kx];  // [o][c][ky][kx] with o, c, ky fixed
  for (int oy = 0; oy < oh; ++oy) {
    const float* xr = x + (int64_t{c} * a.h + oy + ky) * a.w;
    const float* dr = dy + (int64_t{o} * oh + oy) * ow;
    for (int ox = 0; ox < ow; ox += 16) {
      const __mmask16 m = static_cast<__mmask16>(ow - ox >= 16 ? 0xFFFF : (1u << (ow - ox)) - 1);
      __m512 xv[K];
#pragma GCC unroll 5
      for (int kx = 0; kx < K; ++kx) xv[kx] = _mm512_maskz_loadu_ps(m, xr + ox + kx);
#pragma GCC unroll 4
      for (int i = 0; i < OB; ++i) {
        const __m512 dv = _mm512_maskz_loadu_ps(m, dr + i * plane + ox);
#pragma GCC unroll 5
        for (int kx = 0; kx < K; ++kx) acc[i][kx] = _mm512_fmadd_ps(dv, xv[kx], acc[i][kx]);
      }
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < OB; ++i)
#pragma GCC unroll 5
    for (int kx = 0; kx < K; ++kx) part[(i * a.c * K) * K + kx] = acc[i][kx];
}

}  // namespace

void conv5_dw_f32__avx512(const ConvDwArgs& a) {
  const size_t n = size_t(a.oc) * a.c * K * K;
  thread_local AlignedVector<float> lanes;  // [oc][c][ky][kx][16] lane partial sums
  lanes.assign(n * 16, 0.0f);
  __m512* part = reinterpret_cast<__m512*>(lanes.data());  // __m512 may alias float
  for (int b = 0; b < a.n; ++b) {
    const float *x = a.x + b * a.x_stride, *dy = a.dy + b * a.dy_stride;
    for (int o = 0; o < a.oc; o += 4)
      for (int c = 0; c < a.c; ++c)
        for (int ky = 0; ky < K; ++ky) {
          __m512* p = part + ((int64_t{o} * a.c + c) * K + ky) * K;
          switch (std::min(4, a.oc - o)) {
            case 4: block<4>(a, x, dy, o, c, ky, p); break;
            case 3: block<3>(a, x, dy, o, c, ky, p); break;
            case 2: block<2>(a, x, dy, o, c, ky, p); break;
            default: block<1>(a, x, dy, o, c, ky, p); break;
          }
        }
  }
  for (size_t j = 0; j < n; ++j) a.dw[j] += _mm512_reduce_add_ps(part[j]);
}

}  // namespace lowbit
