// The one place where an instruction set is chosen (STYLE.md rule 3). Kernels live in
// src/kernels/{ref,avx2,avx512}/ and are reached only through the table returned by kernels().
// LOWBIT_ISA=ref|avx2|avx512 forces one (for tests); naming one this CPU lacks falls back to the
// best available and says so once on stderr.
#pragma once

#include <cstdint>

namespace lowbit {

enum class Isa { ref = 0, avx2 = 1, avx512 = 2 };
const char* isa_name(Isa isa);
bool cpu_supports(Isa isa);
Isa best_isa();  // best this CPU supports, ignoring LOWBIT_ISA
// The avx512 table takes a VBMI kernel where the CPU has that extension too (Ice Lake, Zen 4 on).
bool cpu_has_avx512vbmi();

// C[m, n] (+)= A[m, k] * B[k, n], with general strides: A(i, p) = A[i * rs_a + p * cs_a],
// B(p, j) = B[p * rs_b + j * cs_b], C(i, j) = C[i * ldc + j]. Overwrites C unless accumulate.
// No threading inside: callers split work across threads.
struct SgemmArgs {
  int m, n, k;
  const float* a;
  int64_t rs_a, cs_a;
  const float* b;
  int64_t rs_b, cs_b;
  float* c;
  int64_t ldc;
  bool accumulate;
};
using SgemmFn = void (*)(const SgemmArgs&);

// C[m, n] (+)= A[m, k] * B[k, n] with B given row by row: B(p, j) = b_rows[p][j]; A with
// contiguous rows, A(i, p) = a[i * lda + p], or by row pointers when a_rows is set:
// A(i, p) = a_rows[i][p] (A is read one element at a time: no slack needed); C as in SgemmArgs. The SIMD kernels load whole register tiles, so every row must be readable (finite
// values) up to kSgemmRowsSlack floats past column n - 1. A stride-1 convolution is such a GEMM
// on its (padded) input without im2col: row (c, ky, kx) starts at plane c, row ky, column kx.
struct SgemmRowsArgs {
  int m, n, k;
  const float* a;
  int64_t lda;
  const float* const* b_rows;
  float* c;
  int64_t ldc;
  bool accumulate;
  const float* const* a_rows = nullptr;
};
using SgemmRowsFn = void (*)(const SgemmRowsArgs&);
constexpr int kSgemmRowsSlack = 32;

// C[m, n] (+)= sum_{s < segments} sum_{t < rows} sum_{p < k} A(s, i, t, p) * B(s, j, t, p) with both
// operands given by row pointers along the reduction: A(s, i, t, p) = a_rows[s*m + i][t*a_ld + p],
// B(s, j, t, p) = b_rows[s*n + j][t*b_ld + p] (C = A * B^T summed over segments and their runs of k
// floats). Exactly those floats are read. A weight gradient dW[OC, K] = sum over images of
// dY[OC, P] * X^T: dY's rows and the im2col rows of a stride-1 conv (pointers into its input)
// both run along the output pixels, one output row (k = OW floats) at a time: rows = OH, a_ld =
// OW, b_ld = the input's row length; so the lanes do too and no operand is copied or transposed;
// one segment per image. SIMD versions keep partial sums in lanes over everything and add across
// lanes once: results equal the reference within float rounding.
struct SgemmNtArgs {
  int m, n, k;
  const float* const* a_rows;
  const float* const* b_rows;
  float* c;
  int64_t ldc;
  bool accumulate;
  int segments = 1;
  int rows = 1;
  int64_t a_ld = 0, b_ld = 0;
};
using SgemmNtFn = void (*)(const SgemmNtArgs&);

// The epilogue of Sequential's conv -> ReLU -> 2x2/2 max pool fusion, one output channel: for
// oy < oh, ox < ow: y[oy*ow + ox] = c[oy*ldc + ox] + bias (reads no other c), r = y > 0 ? y : 0,
// and q[py*(ow/2) + px] = the max of r over rows 2py, 2py+1 and columns 2px, 2px+1 (a last odd
// row or column is not pooled). Exact: every ISA gives the reference's bits. With spill, a kernel
// may also write up to 15 floats of garbage past y[oh*ow - 1] and r[oh*ow - 1], which the caller
// overwrites later (the next channel's plane): whole-vector stores instead of masked ones.
using BiasReluMaxpoolFn = void (*)(const float* c, int64_t ldc, int oh, int ow, float bias, float* y, float* r,
                                   float* q, bool spill);

// The backward of ReLU -> 2x2/2 max pool, one plane: dy = the gradient at the ReLU's input y
// (oh x ow) from dq, the pool output's gradient (oh/2 x ow/2), with r = relu(y) the pool's input:
// dy[p] = 0 + dq[window of p] where p is its window's first maximum of r (order (0,0), (0,1),
// (1,0), (1,1), strict >, as Pool2d::backward) and y[p] > 0, else 0; rows and columns outside
// the windows get 0. Exactly Pool2d::backward then Activation::backward (bit for bit). With y
// null there is no ReLU (no y > 0 test): exactly Pool2d::backward alone, r its input.
using ReluMaxpoolBackwardFn = void (*)(const float* y, const float* r, const float* dq, int oh, int ow, float* dy);

// The same pair for training, where nothing but the backward pass reads the forward's results:
// the epilogue stores only q and, per window, the position its gradient goes to, win[py*(ow/2) + px]
// = 0..3 (the first maximum of r in the order above) when that maximum is > 0 (then y there is
// > 0 too), else kNoWin; y and r are not stored. The backward gives the same dy bits from win and
// dq alone. Exact on every ISA.
constexpr uint8_t kNoWin = 4;
using BiasReluMaxpoolWinFn = void (*)(const float* c, int64_t ldc, int oh, int ow, float bias, float* q, uint8_t* win);
using ReluMaxpoolBackwardWinFn = void (*)(const uint8_t* win, const float* dq, int oh, int ow, float* dy);

// Plain 2x2/2 max pooling of one plane (oh x ow, a last odd row or column dropped), as Pool2d:
// q[py*(ow/2) + px] = std::max(std::max(x00, x01), std::max(x10, x11)) of its window (NaN: std::max
// keeps its first operand unless the second is larger). Exact on every ISA.
using Maxpool2x2Fn = void (*)(const float* x, int oh, int ow, float* q);

// col2im, the adjoint of im2col in Conv2d's backward: for images n < t, dx[n][ci][iy][ix] +=
// col[(ci*k + ky)*k + kx][n*oh*ow + oy*ow + ox] (rows ld floats apart) for every tap with
// iy = oy*stride - pad + ky, ix = ox*stride - pad + kx inside the h x w image. The contributions
// to one element are added in (ky, kx) order on every ISA, so results are bit-identical.
struct Col2imArgs {
  const float* col;
  int64_t ld;
  int t, c, h, w, k, stride, pad, oh, ow;
  float* dx;
};
using Col2imFn = void (*)(const Col2imArgs&);

// Convolutions on 16 images side by side ("lanes"): a group of up to kLanes images is stored
// with the image index innermost, x[c][y][x][kLanes], so every tap of a stride-1 convolution is
// one scalar weight times one vector of 16 images: no wasted columns, no im2col, no transposes
// inside the GEMM-like loops. Kernel k x k, stride 1, no padding: oh = h - k + 1, ow = w - k + 1.
//   fwd: y[o][oy][ox][:] = sum over (c, ky, kx) in that order of w[o][c][ky][kx] * x[c][oy+ky][ox+kx][:]
//   dw:  dw[o][c][ky][kx] += sum over lanes of sum over (oy, ox) of dy[o][oy][ox][:] * x[c][oy+ky][ox+kx][:]
//   dx:  x[c][iy][ix][:] = sum over (o, ky, kx) of w[o][c][ky][kx] * dy[o][iy-ky][ix-kx][:] (taps inside
//        dy only); dx writes into x (overwrites it).
// Lanes of absent images are zero in x and dy and so add nothing to dw. SIMD versions sum in a
// different order than the reference: results agree within float rounding. The fast versions
// take only the shapes conv_lanes_fits() accepts (k = 5; rows of any width, in strips of <= 12).
constexpr int kLanes = 16;
struct ConvLanesArgs {
  int c, h, w, oc, k;
  const float* wt;  // [oc][c][k][k]
  float* x;         // [c][h][w][kLanes]: read by fwd and dw, written by dx
  float* y;         // [oc][oh][ow][kLanes]: written by fwd (y), read by dw and dx (dy)
  float* dw;        // [oc][c][k][k], accumulated by dw
};
using ConvLanesFn = void (*)(const ConvLanesArgs&);
bool conv_lanes_fits(int c, int h, int w, int oc, int k);
// Layout changes: images [0, n) of src (image i at src + i*stride, count floats each) into lanes,
// dst[j*kLanes + i] = src[i*stride + j], lanes n..kLanes-1 zero; and back (lanes >= n unread).
using ToLanesFn = void (*)(const float* src, int64_t stride, int n, int64_t count, float* dst);
using FromLanesFn = void (*)(const float* src, int64_t count, int n, float* dst, int64_t stride);

// Training's ReLU -> 2x2/2 max pool pair (BiasReluMaxpoolWinFn, ReluMaxpoolBackwardWinFn) on a
// lane-layout convolution's result y[o][oh][ow][kLanes] (no bias yet; bias may be null): q[o][ph][pw]
// [kLanes] as q there, every lane, and the window codes of lanes i < n at win[p*n + i], p =
// (o*ph + py)*pw + px. The backward writes dy[o][oh][ow][kLanes] from win and dq (q's layout),
// lanes >= n zero. Lane by lane exactly the plane kernels' bits.
using ReluMaxpoolLanesWinFn = void (*)(const float* y, int oc, int oh, int ow, const float* bias, int n, float* q,
                                       uint8_t* win);
using ReluMaxpoolBackwardLanesWinFn = void (*)(const uint8_t* win, const float* dq, int oc, int oh, int ow, int n,
                                               float* dy);

// The weight gradient of a stride-1 5x5 convolution on NCHW images, no im2col: for images b < n,
// dw[o][c][ky][kx] += sum over (oy, ox) of dy_b[o][oy][ox] * x_b[c][oy+ky][ox+kx], x_b = x + b*x_stride
// ([c][h][w]), dy_b = dy + b*dy_stride ([oc][oh][ow], oh = h - 4, ow = w - 4). The SIMD version puts
// 16 output columns in the lanes and keeps lane partial sums over all images (summed across lanes
// once): results equal the reference within float rounding.
struct ConvDwArgs {
  int n, c, h, w, oc;
  const float* x;
  int64_t x_stride;
  const float* dy;
  int64_t dy_stride;
  float* dw;
};
using ConvDwFn = void (*)(const ConvDwArgs&);

struct KernelTable {
  Isa isa;
  SgemmFn sgemm;
  SgemmRowsFn sgemm_rows;
  SgemmNtFn sgemm_nt;
  BiasReluMaxpoolFn bias_relu_maxpool_f32;
  ReluMaxpoolBackwardFn relu_maxpool_backward_f32;
  BiasReluMaxpoolWinFn bias_relu_maxpool_win_f32;
  ReluMaxpoolBackwardWinFn relu_maxpool_backward_win_f32;
  Maxpool2x2Fn maxpool2x2_f32;
  Col2imFn col2im_f32;
  // Null where the ISA has no fast version: Conv2d then runs its GEMM paths.
  ConvLanesFn conv_lanes_fwd, conv_lanes_dw, conv_lanes_dx;
  ToLanesFn to_lanes_f32;
  FromLanesFn from_lanes_f32;
  ReluMaxpoolLanesWinFn relu_maxpool_lanes_win_f32;
  ReluMaxpoolBackwardLanesWinFn relu_maxpool_backward_lanes_win_f32;
  ConvDwFn conv5_dw_f32;  // null likewise
  // QAT's fake quantization (contracts in lowbit/qat.h): the generic loops compiled for this ISA,
  // the same bits; null: the generic build's.
  void (*fake_quant_forward)(const float* x, int64_t n, const struct FakeQuantArgs& a, float* out);
  void (*fake_quant_forward_minmax)(const float* x, int64_t n, const struct FakeQuantArgs& a, float* out, float* xmin,
                                    float* xmax);
  void (*fake_quant_backward_clipped)(const float* x, const float* dy, int64_t n, const struct FakeQuantArgs& a,
                                      float* dx);
  double (*fake_quant_backward_lsq)(const float* x, const float* dy, int64_t n, const struct FakeQuantArgs& a,
                                    float* dx);
  // ---- int8 kernels (engine) are added below this line ----
  // Integer kernels: contracts and argument structs in kernels/qkernels.h (the elaborated
  // `struct X` names declare those structs here without including that header).
  void (*qgemm_u8s8)(const struct QGemmArgs& a);
  void (*qim2col_u8)(const struct QIm2colArgs& a);
  void (*qpack_u8)(const uint8_t* x, int64_t rs, int64_t cs, int k, int n, uint8_t* out);
  void (*qmaxpool2x2_u8)(const uint8_t* in, int64_t planes, int h, int w, uint8_t* out);
  void (*qavgpool2x2_u8)(const uint8_t* in, int64_t planes, int h, int w, uint8_t* out);
  void (*qmaxpool2x2_requant_i32)(const struct QPoolRequantArgs& a);
  // Null where the ISA has no fast version: the engine then runs im2col + GEMM + pool.
  void (*qconv_maxpool_u8)(const struct QConvPoolArgs& a);
  void (*qconv_i32)(const struct QConvI32Args& a);  // null likewise
  void (*qquantize_f32_u8)(const float* x, int64_t n, const struct QQuantizeArgs& p, uint8_t* out);
};

// The table for the active ISA (LOWBIT_ISA or best available), chosen once.
const KernelTable& kernels();
// The table for a given ISA, for tests and benchmarks that compare every ISA with ref.
// Returns nullptr when this CPU lacks it.
const KernelTable* kernels_for(Isa isa);

}  // namespace lowbit
