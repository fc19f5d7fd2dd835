// The integer (u8 activation x s8 weight) kernels of the inference engine: argument structs,
// the function types held by KernelTable (dispatch.h), and every ISA's implementation.
// The *_ref functions are the specification and the test oracle; the SIMD versions agree with
// them bit for bit. Not here: choosing an ISA (dispatch.h), the scalar requantization functions
// (ref/requant_ref.h), layers or planning (src/engine). No kernel allocates or threads: callers
// split work across threads (e.g. by rows of M or by column ranges of N).
//
// Engine conventions:
//  - Activations are u8, u = q + 128 (q the model's int8 value), so u8 order is q order. Zero
//    points and clamp bounds given to kernels are in this u8 domain. Weights are int8.
//  - A convolution is a GEMM on an im2col matrix: C[M = out channels][N = output pixels (of one
//    or several images), or batch images for a linear layer] = W[M][K] * X[K][N].
//  - X is PACKED as [K4/4][N][4], K4 = qk4(K): X(k, n) is byte (k/4)*N*4 + n*4 + k%4, so the
//    four consecutive k of one column n are contiguous (what vpdpbusd consumes). Rows K..K4-1 of
//    X may hold anything because W's padded columns are zero.
//  - acc[m][n] = sum_k W[m][k] * X[k][n] + bias_eff[m] in int32, where
//    bias_eff[m] = bias[m] - z_in_u * sum_k W[m][k] (qbias_eff). The caller keeps
//    |bias_eff| + 255*128*K < 2^31; beyond that every ISA wraps modulo 2^32 identically.
#pragma once

#include <cstdint>

#include "kernels/ref/requant_ref.h"

namespace lowbit {

// K rounded up to a multiple of 4: the depth of packed X and the minimal row stride of W.
inline int qk4(int k) { return (k + 3) & ~3; }

// C = W * X (+ bias_eff), then requantized to u8 or written as raw int32. m, n, k >= 0.
// w: W(i, p) = w[i * ldw + p] for i < m, p < qk4(k); ldw >= qk4(k); W(i, p) = 0 for p >= k.
// x: packed [qk4(k)/4][n][4] u8. bias: [m] bias_eff, never null.
// Output element C(i, j) lives at  out + i * ldc + (j / cols_per_image) * ldc_image
//                                        + j % cols_per_image
// so that N may span several images of an NCHW tensor (cols_per_image = OH*OW, ldc = OH*OW,
// ldc_image = M*OH*OW), or a plain matrix (cols_per_image = 0 means n: out + i*ldc + j), or
// batch-major logits (cols_per_image = 1, ldc = 1, ldc_image = M gives out[j][i]).
// c_i32 non-null: writes acc + bias (no requant); else writes requantize_ref(acc + bias, *rq,
// variant, i) to c_u8.
// wt (optional, may be null): the same W packed transposed, [qk4(k)/4][m rounded up to 16][4]
// (qpack_weights_t_s8); a kernel may use it when n is small (batch-1 GEMV-like layers).
struct QGemmArgs {
  int m = 0, n = 0, k = 0;
  const int8_t* w = nullptr;
  int64_t ldw = 0;
  const int8_t* wt = nullptr;
  const uint8_t* x = nullptr;
  const int32_t* bias = nullptr;
  int64_t ldc = 0;
  int cols_per_image = 0;
  int64_t ldc_image = 0;
  uint8_t* c_u8 = nullptr;
  int32_t* c_i32 = nullptr;
  const RequantParams* rq = nullptr;
  RequantVariant variant = RequantVariant::fixedpoint;
};
using QGemmFn = void (*)(const QGemmArgs&);

// im2col of u8 images straight into the packed layout.
// in: image b (b < nb), channel c: plane at in + b * in_bstride + c * in_cstride, h rows of w
//     contiguous u8 (NCHW: in_bstride = c*h*w, in_cstride = h*w).
// out: packed [qk4(K)/4][N][4] with K = c*kh*kw, k = (ci*kh + i)*kw + j, N = nb*oh*ow,
//      column n = (b*oh + y)*ow + x, oh = (h + 2*pad - kh)/stride + 1 (likewise ow).
// X(k, n) = in(b, ci, y*stride - pad + i, x*stride - pad + j), or pad_value (the input zero
// point, u8) outside the image; rows k >= K are written as 0. SIMD versions may write scratch
// bytes into positions of the packed matrix that they overwrite later in the same call (never
// outside it), so concurrent calls must not share one packed matrix.
struct QIm2colArgs {
  const uint8_t* in = nullptr;
  int nb = 1, c = 1, h = 0, w = 0;
  int64_t in_bstride = 0, in_cstride = 0;
  int kh = 1, kw = 1, stride = 1, pad = 0;
  uint8_t pad_value = 128;
  uint8_t* out = nullptr;
};
using QIm2colFn = void (*)(const QIm2colArgs&);
inline int qconv_out_size(int in, int kernel, int stride, int pad) {
  return (in + 2 * pad - kernel) / stride + 1;
}

// Packs a plain u8 matrix X(p, j) = x[p * rs + j * cs] (p < k, j < n) into [qk4(k)/4][n][4];
// rows k..qk4(k)-1 are written as 0. Linear layers: X[K][batch] (rs = n, cs = 1) or the
// batch-major activations [batch][K] (rs = 1, cs = K).
using QPackFn = void (*)(const uint8_t* x, int64_t rs, int64_t cs, int k, int n, uint8_t* out);

// 2x2 pooling, stride 2, on `planes` contiguous h x w u8 planes (NCHW: planes = N*C); out holds
// planes of (h/2) x (w/2) (odd sizes drop the last row/column).
//  max: max of the four u8 values (u8 order = q order).
//  avg: the integer sum of the four q = u - 128 values divided by 4, rounded to nearest with
//       ties away from zero (as TFLite's int8 AveragePool), stored back as u8:
//       out = 128 + rdiv4(u0 + u1 + u2 + u3 - 512). Zero points are unchanged by pooling.
// As with im2col, SIMD versions may write scratch bytes into later positions of out (never
// outside it) that they overwrite before returning.
using QPool2x2Fn = void (*)(const uint8_t* in, int64_t planes, int h, int w, uint8_t* out);

// 2x2 stride-2 max pooling of int32 accumulators, then requantization: the engine's conv -> max
// pool pair with the pool moved before the requantization, which gives the same bytes because
// requantize_ref is non-decreasing in acc for every variant (and so is its clamp) and has the
// same parameters for the four values of a window (one channel). in: nb images of c planes of
// h x w int32 (bias_eff added); out: nb x c planes of (h/2) x (w/2) u8,
// out = requantize_ref(max of the window, rq, variant, plane % c); odd sizes drop the last row or
// column, as the u8 pooling does.
struct QPoolRequantArgs {
  const int32_t* in = nullptr;
  int nb = 0, c = 0, h = 0, w = 0;
  const RequantParams* rq = nullptr;
  RequantVariant variant = RequantVariant::fixedpoint;
  uint8_t* out = nullptr;
};
using QPoolRequantFn = void (*)(const QPoolRequantArgs& a);

// A stride-1 convolution, then 2x2 stride-2 max pooling, then requantization, without im2col:
// for first layers with few input channels and wide rows (LeNet's conv1: 1 x 32 x 32, 5 x 5),
// where im2col writes kh*kw bytes per output pixel and the GEMM's int32 output is pooled next.
// in: nb images (stride in_bstride) of c planes of h x w u8 (plane stride h*w).
// oh = h + 2*pad - kh + 1, ow likewise; out: nb x m planes of (oh/2) x (ow/2) u8 (odd sizes drop
// the last row or column):
//   out(b, i, py, px) = requantize_ref(max over oy in {2py, 2py+1}, ox in {2px, 2px+1} of
//                       bias[i] + sum_{ci, ky, kx} W(i, (ci*kh + ky)*kw + kx) * in(b, ci, oy+ky-pad, ox+kx-pad))
// with in(...) = pad_value outside the image and the sum taken modulo 2^32: exactly what im2col,
// the GEMM to int32 and qmaxpool2x2_requant_i32 give. weight: W(i, p) = weight[i * ldw + p] (the
// reference reads it); weight_packed: the same packed by qpack_weights_conv_s8 (SIMD kernels).
// The SIMD kernel takes shapes accepted by qconv_maxpool_fits() only.
struct QConvPoolArgs {
  const uint8_t* in = nullptr;
  int nb = 1, c = 1, h = 0, w = 0;
  int64_t in_bstride = 0;
  int kh = 1, kw = 1, pad = 0;
  uint8_t pad_value = 128;
  int m = 0;
  const int8_t* weight = nullptr;
  int64_t ldw = 0;
  const int8_t* weight_packed = nullptr;
  const int32_t* bias = nullptr;
  const RequantParams* rq = nullptr;
  RequantVariant variant = RequantVariant::fixedpoint;
  uint8_t* out = nullptr;
};
using QConvPoolFn = void (*)(const QConvPoolArgs& a);
// Rows of at most 64 input bytes and 32 outputs, kernels up to 8 x 8, two pooled outputs.
inline bool qconv_maxpool_fits(int h, int w, int kh, int kw, int pad) {
  const int oh = qconv_out_size(h, kh, 1, pad), ow = qconv_out_size(w, kw, 1, pad);
  return w <= 64 && kh <= 8 && kw <= 8 && oh >= 2 && ow >= 2 && ow <= 32;
}
// Output channels of one block of the SIMD kernel; wq is padded to a multiple of it.
constexpr int kConvPoolBlock = 6;

// A stride-1 unpadded convolution to int32 accumulators without an im2col matrix (implicit
// GEMM): for middle layers whose im2col cost as much as their GEMM (LeNet's conv2, 6 x 14 x 14 by
// 16 x 6 x 5 x 5). in: nb images (stride in_bstride) of c planes of h x w u8 (plane stride h*w),
// readable kQConvSlack bytes past the last image's last plane. out: nb images (stride m*oh*ow) of
// m planes of oh x ow int32, oh = h - kh + 1, ow = w - kw + 1:
//   out(b, i, oy, ox) = bias[i] + sum_{ci, ky, kx} W(i, (ci*kh + ky)*kw + kx) * in(b, ci, oy + ky, ox + kx)
// modulo 2^32 (the GEMM's int32 output on im2col, bias_eff included). weight: W(i, p) =
// weight[i * ldw + p] (the reference reads it); weight_t: the same packed by qpack_weights_t_s8
// (the SIMD kernels read it). SIMD kernels take shapes accepted by qconv_i32_fits() only.
struct QConvI32Args {
  const uint8_t* in = nullptr;
  int nb = 1, c = 1, h = 0, w = 0;
  int64_t in_bstride = 0;
  int kh = 1, kw = 1;
  int m = 0;
  const int8_t* weight = nullptr;
  int64_t ldw = 0;
  const int8_t* weight_t = nullptr;
  const int32_t* bias = nullptr;
  int32_t* out = nullptr;
};
using QConvI32Fn = void (*)(const QConvI32Args& a);
constexpr int kQConvSlack = 64;
// The SIMD kernel takes 16 consecutive output pixels (of one image, across output rows) from one
// 64-byte window per tap: every such window must span at most 64 input bytes. Its tables hold
// up to 1024 taps and 1024 output pixels.
bool qconv_i32_fits(int c, int h, int w, int kh, int kw);

// Input quantization: out[i] = clamp(round_half_even(x[i] / scale) + z_u, lo_u, hi_u), the
// division in IEEE float32; NaN maps to z_u (clamped). scale finite > 0.
struct QQuantizeArgs {
  float scale = 1.0f;
  int32_t z_u = 128, lo_u = 0, hi_u = 255;
};
using QQuantizeFn = void (*)(const float* x, int64_t n, const QQuantizeArgs& p, uint8_t* out);

// ---- preparation helpers (not kernels: called once when a model is loaded) ----
// Copies W[m][k] (row stride ldw_in) into out[m][qk4(k)], zero-filling the padded columns.
void qpad_weights_s8(const int8_t* w, int m, int k, int64_t ldw_in, int8_t* out);
// W^T for QGemmArgs::wt: out[(p/4) * M16 * 4 + i * 4 + p % 4] = W(i, p), M16 = m rounded up to
// 16, zero for i >= m or p >= k; out holds qk4(k) * M16 bytes.
void qpack_weights_t_s8(const int8_t* w, int m, int k, int64_t ldw_in, int8_t* out);
// For QConvPoolArgs::weight_packed: per block of kConvPoolBlock output channels, per input channel
// ci and kernel row ky, G = (kw + 3) / 4 groups of 4 taps, each channel's 4 bytes side by side:
// out[((((i / B)*c + ci)*kh + ky)*G + g)*B*4 + (i % B)*4 + t] = W(i, (ci*kh + ky)*kw + 4g + t),
// B = kConvPoolBlock, zero where 4g + t >= kw or i >= m (m is padded to a multiple of B).
// Returns the byte count when out is null.
int64_t qpack_weights_conv_s8(const int8_t* w, int m, int c, int kh, int kw, int64_t ldw, int8_t* out);
// bias_eff[i] = bias[i] - z_in_u * sum_p W[i][p] (bias may be null = 0). Throws lowbit::Error
// naming `what` when a value does not fit int32 or 255*128*k + |bias_eff| reaches 2^31.
void qbias_eff(const int8_t* w, int m, int k, int64_t ldw, const int32_t* bias, int32_t z_in_u,
               int32_t* bias_eff, const char* what);

// ---- implementations (reach them through kernels(); listed for tests and benchmarks) ----
void qgemm_u8s8_ref(const QGemmArgs& a);
void qgemm_u8s8_2x16__avx2(const QGemmArgs& a);
void qgemm_u8s8_6x64__avx512vnni(const QGemmArgs& a);

void qim2col_u8_ref(const QIm2colArgs& a);
void qim2col_u8__avx2(const QIm2colArgs& a);  // also used by the avx512 table without VBMI
void qim2col_u8__avx512vbmi(const QIm2colArgs& a);  // needs AVX-512 VBMI (cpu_has_avx512vbmi)

void qpack_u8_ref(const uint8_t* x, int64_t rs, int64_t cs, int k, int n, uint8_t* out);
void qpack_u8__avx2(const uint8_t* x, int64_t rs, int64_t cs, int k, int n, uint8_t* out);

void qmaxpool2x2_u8_ref(const uint8_t* in, int64_t planes, int h, int w, uint8_t* out);
void qavgpool2x2_u8_ref(const uint8_t* in, int64_t planes, int h, int w, uint8_t* out);
void qmaxpool2x2_u8__avx2(const uint8_t* in, int64_t planes, int h, int w, uint8_t* out);

void qmaxpool2x2_requant_i32_ref(const QPoolRequantArgs& a);
void qmaxpool2x2_requant_i32__avx512(const QPoolRequantArgs& a);

void qconv_maxpool_u8_ref(const QConvPoolArgs& a);
void qconv_maxpool_u8__avx512vbmi(const QConvPoolArgs& a);  // needs VBMI; qconv_maxpool_fits shapes

void qconv_i32_ref(const QConvI32Args& a);
void qconv_i32__avx512vbmi(const QConvI32Args& a);  // needs VBMI; qconv_i32_fits shapes

void qquantize_f32_u8_ref(const float* x, int64_t n, const QQuantizeArgs& p, uint8_t* out);
void qquantize_f32_u8__avx2(const float* x, int64_t n, const QQuantizeArgs& p, uint8_t* out);

}  // namespace lowbit
