// Conv2d: forward and backward as GEMMs, or on 16 images side by side.
// Where the lane kernels fit (5x5, stride 1, no padding: LeNet's conv1 and conv2), groups of 16
// images are turned into one vector per pixel and every pass is broadcast-weight FMAs
// (ConvLanesArgs in kernels/dispatch.h): no im2col, no wasted columns.
// Forward, stride 1: per image, out[OC, N] = W[OC, K] * B with B's rows pointing into the input
// (conv_rows, no im2col). A whole-image kernel (LeNet's conv3): out[n][OC] = x[n][K] * W^T,
// against W^T built once while frozen (inference), else as dot products of x's and W's rows.
// Otherwise, per tile of images: col[K = C*KH*KW, T*P] (P = OH*OW), out[OC, T*P] = W * col.
// Backward: dW[OC, K] += dout[OC, T*P] * col^T (stride 1: dY and the input rows both along the
// output pixels, no im2col);
// dcol[K, T*P] = W^T * dout, then col2im.
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/aligned_vector.h"
#include "kernels/dispatch.h"
#include "lowbit/nn.h"
#include "nn/dense.h"

namespace lowbit {

namespace {

struct Geometry {
  int c, h, w, k, stride, pad, oh, ow;
  int p() const { return oh * ow; }
  int kdim() const { return c * k * k; }
};

// col[(c, ky, kx), t * P + (oy, ox)] for images x[0..t); padding reads as 0. ld = row length.
void im2col(const Geometry& g, const float* x, int t, float* col, int64_t ld) {
  int P = g.p();
  for (int ci = 0; ci < g.c; ++ci)
    for (int ky = 0; ky < g.k; ++ky)
      for (int kx = 0; kx < g.k; ++kx) {
        float* row = col + ((int64_t{ci} * g.k + ky) * g.k + kx) * ld;
        for (int n = 0; n < t; ++n) {
          const float* plane = x + (int64_t{n} * g.c + ci) * g.h * g.w;
          float* dst = row + int64_t{n} * P;
          for (int oy = 0; oy < g.oh; ++oy) {
            int iy = oy * g.stride - g.pad + ky;
            float* d = dst + oy * g.ow;
            if (iy < 0 || iy >= g.h) {
              std::fill(d, d + g.ow, 0.0f);
              continue;
            }
            const float* srow = plane + iy * g.w;
            if (g.stride == 1 && g.pad == 0) {  // the whole output row reads one input run
              // An inline loop, not std::copy_n: a memmove call per 10-28 floats cost more than
              // the copy itself.
              const float* s = srow + kx;
              for (int ox = 0; ox < g.ow; ++ox) d[ox] = s[ox];
              continue;
            }
            for (int ox = 0; ox < g.ow; ++ox) {
              int ix = ox * g.stride - g.pad + kx;
              d[ox] = (ix >= 0 && ix < g.w) ? srow[ix] : 0.0f;
            }
          }
        }
      }
}

// Images per GEMM: enough columns to fill the register tiles (conv3 has P = 1).
int tile_images(int P) { return std::max(1, 256 / P); }

struct Scratch {
  AlignedVector<float> col, out, grad, xp, xl, yl;
  std::vector<const float*> rows, arows, brows;
};
thread_local Scratch tl;

}  // namespace

Conv2d::Conv2d(int in_c, int out_c, int k, int s, int p, bool b)
    : in_ch(in_c), out_ch(out_c), kernel(k), stride(s), pad(p), has_bias(b) {
  if (in_c <= 0 || out_c <= 0 || k <= 0 || s <= 0 || p < 0)
    throw Error("Conv2d: channels, kernel and stride must be positive and padding >= 0");
  weight.resize({out_c, in_c, k, k});
  weight.zero();
  dweight.resize(weight.shape());
  dweight.zero();
  if (b) {
    bias.resize({out_c});
    bias.zero();
    dbias.resize({out_c});
    dbias.zero();
  }
}

Shape Conv2d::output_shape(const Shape& in) const {
  if (in.size() != 4 || in[1] != in_ch)
    throw Error("Conv2d expects input (N, " + std::to_string(in_ch) + ", H, W), got " + shape_str(in));
  int oh = (in[2] + 2 * pad - kernel) / stride + 1, ow = (in[3] + 2 * pad - kernel) / stride + 1;
  if (in[2] + 2 * pad < kernel || in[3] + 2 * pad < kernel)
    throw Error("Conv2d kernel " + std::to_string(kernel) + " larger than padded input " + shape_str(in));
  return {in[0], out_ch, oh, ow};
}

static Geometry geometry(const Conv2d& c, const Shape& in, const Shape& out) {
  return {in[1], in[2], in[3], c.kernel, c.stride, c.pad, out[2], out[3]};
}

namespace {

// Row pointers of one image for the row-pointer GEMMs: row (ci, ky, kx) of its im2col matrix is
// the (zero-padded) input itself from (ci*HP + ky)*WP + kx on, read along n = oy*WP + ox. Without
// padding the rows point into x: loads past an image's last pixel land in the next image or in
// the tensor's slack (Tensor::kSlack >= kSgemmRowsSlack); with padding x is copied into tl.xp.
const float* const* image_rows(const Conv2d& l, const Geometry& g, const float* x) {
  static_assert(Tensor::kSlack >= kSgemmRowsSlack);
  const int k = l.kernel, hp = g.h + 2 * l.pad, wp = g.w + 2 * l.pad;
  const int64_t plane = int64_t{hp} * wp;
  const float* base = x;
  if (l.pad > 0) {
    float* xp = room(tl.xp, g.c * plane + kSgemmRowsSlack);
    std::fill(xp, xp + g.c * plane + kSgemmRowsSlack, 0.0f);
    for (int ci = 0; ci < g.c; ++ci)
      for (int y = 0; y < g.h; ++y) {
        const float* src = x + (int64_t{ci} * g.h + y) * g.w;
        float* dst = xp + ci * plane + int64_t{y + l.pad} * wp + l.pad;
        for (int i = 0; i < g.w; ++i) dst[i] = src[i];
      }
    base = xp;
  }
  tl.rows.resize(static_cast<size_t>(g.kdim()));
  for (int ci = 0; ci < g.c; ++ci)
    for (int ky = 0; ky < k; ++ky)
      for (int kx = 0; kx < k; ++kx) tl.rows[size_t((ci * k + ky) * k + kx)] = base + ci * plane + ky * wp + kx;
  return tl.rows.data();
}

// Stride 1, one image at a time, without im2col: out[OC, N] = W[OC, K] * B with B's rows from
// image_rows (sgemm_rows), N = (OH-1)*WP + OW; the columns with ox >= OW (the row wrap) are
// computed and dropped. epilogue(b, c) gets image b's result: output (o, oy, ox) at
// c[o * N + oy * WP + ox], no bias.
template <class Epilogue>
void conv_rows(const Conv2d& l, const Geometry& g, const Tensor& in, int n0, int n1, Epilogue epilogue) {
  const int K = g.kdim(), wp = g.w + 2 * l.pad, N = (g.oh - 1) * wp + g.ow;
  const int64_t in_stride = int64_t{g.c} * g.h * g.w;
  float* c = room(tl.out, int64_t{l.out_ch} * N);
  const SgemmRowsFn sgemm_rows = kernels().sgemm_rows;
  for (int b = n0; b < n1; ++b) {
    const float* const* rows = image_rows(l, g, in.data() + b * in_stride);
    sgemm_rows({l.out_ch, N, K, l.weight.data(), K, rows, c, N, false});
    epilogue(b, c);
  }
}

// dW[OC, K] += sum over images [n0, n1) of dY * X^T, stride 1, without im2col or copies of dY: a
// 5x5 kernel by conv5_dw_f32 where the ISA has it, else by sgemm_nt: X's rows from image_rows and
// dY's rows both along the output pixels, one output row of OW at a time (dY rows OW apart, X
// rows WP apart), so no transposes and no idle lanes for any OC. One segment per image, up to
// kSegments images per call so that the kernel's sums across lanes are shared (unpadded inputs
// only: a padded image is copied to one scratch buffer).
void weight_grad_rows(const Conv2d& l, const Geometry& g, const Tensor& in, const Tensor& dout, int n0, int n1,
                      Tensor& dw) {
  constexpr int kSegments = 16;
  const int K = g.kdim(), oc = l.out_ch, wp = g.w + 2 * l.pad;
  const int64_t in_stride = int64_t{g.c} * g.h * g.w, out_stride = int64_t{oc} * g.p();
  if (const ConvDwFn conv5_dw = kernels().conv5_dw_f32; conv5_dw && l.kernel == 5) {  // images off the lanes
    if (l.pad == 0) {
      conv5_dw({n1 - n0, g.c, g.h, g.w, oc, in.data() + n0 * in_stride, in_stride, dout.data() + n0 * out_stride,
                out_stride, dw.data()});
      return;
    }
    for (int b = n0; b < n1; ++b) {
      image_rows(l, g, in.data() + b * in_stride);  // the padded copy, in tl.xp
      conv5_dw({1, g.c, g.h + 2 * l.pad, wp, oc, tl.xp.data(), 0, dout.data() + b * out_stride, 0, dw.data()});
    }
    return;
  }
  const int per_call = l.pad == 0 ? kSegments : 1;
  tl.brows.resize(static_cast<size_t>(per_call) * oc);
  tl.arows.resize(static_cast<size_t>(per_call) * K);
  const SgemmNtFn sgemm_nt = kernels().sgemm_nt;
  for (int b0 = n0; b0 < n1; b0 += per_call) {
    const int segs = std::min(per_call, n1 - b0);
    for (int s = 0; s < segs; ++s) {
      const float* dy = dout.data() + (b0 + s) * out_stride;
      for (int o = 0; o < oc; ++o) tl.brows[size_t(s * oc + o)] = dy + int64_t{o} * g.p();
      const float* const* rows = image_rows(l, g, in.data() + (b0 + s) * in_stride);
      std::copy_n(rows, K, tl.arows.begin() + int64_t{s} * K);
    }
    sgemm_nt({oc, K, g.ow, tl.brows.data(), tl.arows.data(), dw.data(), K, true, segs, g.oh, g.ow, wp});
  }
}

// The lane-layout kernels (ConvLanesArgs) take this layer: groups of kLanes images are turned
// into lanes, convolved and turned back. LeNet's conv1 and conv2; not a kernel covering the
// image (conv3), a plain GEMM over the batch. A group costs the same
// with 1 image as with 16; below kMinLanes images the per-image GEMM paths are faster (LeNet's
// conv2: about half the lanes' speed per image), e.g. at batch 1.
constexpr int kMinLanes = 8;

bool lanes(const Conv2d& l, const Geometry& g) {
  return kernels().conv_lanes_fwd && l.stride == 1 && l.pad == 0 && g.p() > 1 &&
         conv_lanes_fits(g.c, g.h, g.w, l.out_ch, l.kernel);
}

// The lane groups of images [n0, n1): kLanes images each, the last one the rest, while at least
// kMinLanes are left; group(first image, images). Returns where the images left over start.
// Forward and backward split a range alike, so training's window codes are found again.
template <class Group>
int lane_groups(int n0, int n1, Group group) {
  for (int nb; n1 - n0 >= kMinLanes; n0 += nb) {
    nb = std::min(kLanes, n1 - n0);
    group(n0, nb);
  }
  return n0;
}

// The forward of [n0, n1) on the lane kernels, in groups of kMinLanes to kLanes images:
// group(first image, images, yl) gets each group's result in lanes (no bias). Returns where the
// images left for the other paths start.
template <class Group>
int forward_lanes(const Conv2d& l, const Geometry& g, const Tensor& in, int n0, int n1, Group group) {
  if (!lanes(l, g)) return n0;
  const KernelTable& kt = kernels();
  const int64_t xsize = int64_t{g.c} * g.h * g.w, ysize = int64_t{l.out_ch} * g.p();
  float* xl = room(tl.xl, xsize * kLanes);
  float* yl = room(tl.yl, ysize * kLanes);
  return lane_groups(n0, n1, [&](int b0, int nb) {
    kt.to_lanes_f32(in.data() + b0 * xsize, xsize, nb, xsize, xl);
    kt.conv_lanes_fwd({g.c, g.h, g.w, l.out_ch, l.kernel, l.weight.data(), xl, yl, nullptr});
    group(b0, nb, static_cast<const float*>(yl));
  });
}

}  // namespace

void Conv2d::forward_rows(const Tensor& in, Tensor& out, int n0, int n1) {
  const Geometry g = geometry(*this, in.shape(), out.shape());
  const int wp = g.w + 2 * pad, N = (g.oh - 1) * wp + g.ow;
  const int64_t ysize = int64_t{out_ch} * g.p();
  n0 = forward_lanes(*this, g, in, n0, n1, [&](int b0, int nb, const float* yl) {
    float* y = out.data() + b0 * ysize;
    kernels().from_lanes_f32(yl, ysize, nb, y, ysize);
    if (has_bias)
      for (int b = 0; b < nb; ++b)
        for (int o = 0; o < out_ch; ++o)
          for (int64_t p = 0; p < g.p(); ++p) y[b * ysize + o * g.p() + p] += bias[o];
  });
  conv_rows(*this, g, in, n0, n1, [&](int b, const float* c) {
    float* y = out.data() + int64_t{b} * out_ch * g.p();
    for (int o = 0; o < out_ch; ++o) {
      const float bv = has_bias ? bias[o] : 0.0f;
      for (int oy = 0; oy < g.oh; ++oy) {
        const float* src = c + int64_t{o} * N + int64_t{oy} * wp;
        float* dst = y + (int64_t{o} * g.oh + oy) * g.ow;
        for (int ox = 0; ox < g.ow; ++ox) dst[ox] = src[ox] + bv;
      }
    }
  });
}

bool Conv2d::fuses_relu_maxpool(const Shape& in) const {
  const Shape out = output_shape(in);
  return stride == 1 && out[2] * out[3] > 1;
}

void Conv2d::forward_relu_maxpool(const Tensor& in, Tensor& conv_out, Tensor& relu_out, Tensor& pool_out, int n0,
                                  int n1, uint8_t* win) {
  const Geometry g = geometry(*this, in.shape(), conv_out.shape());
  const int wp = g.w + 2 * pad, N = (g.oh - 1) * wp + g.ow;
  const int ph = pool_out.dim(2), pw = pool_out.dim(3);  // floor(OH / 2), floor(OW / 2)
  const BiasReluMaxpoolFn keep_all = kernels().bias_relu_maxpool_f32;
  const BiasReluMaxpoolWinFn keep_win = kernels().bias_relu_maxpool_win_f32;
  // Channel o of image b from its result c (rows ldc apart).
  auto epilogue = [&](int64_t b, int o, const float* c, int64_t ldc) {
    const int64_t plane = (b * out_ch + o) * g.p(), pooled = (b * out_ch + o) * ph * pw;
    const float bv = has_bias ? bias[o] : 0.0f;
    // Channels go in order, so channel o's overhang (spill) lands in channel o + 1's planes
    // before they are written; not past an image's last channel (the next may be another thread's).
    if (win)
      keep_win(c, ldc, g.oh, g.ow, bv, pool_out.data() + pooled, win + pooled);
    else
      keep_all(c, ldc, g.oh, g.ow, bv, conv_out.data() + plane, relu_out.data() + plane, pool_out.data() + pooled,
               o + 1 < out_ch);
  };
  const int64_t ysize = int64_t{out_ch} * g.p();
  // On the lane kernels. Training: ReLU and pool run in the lanes too, so only q (a quarter of
  // the conv's result) goes back to NCHW, and a group's window codes stay in lane order
  // (ReluMaxpoolLanesWinFn), where backward_relu_maxpool reads them. Else the result goes back
  // to NCHW for the epilogue.
  const KernelTable& kt = kernels();
  const int64_t qsize = int64_t{out_ch} * ph * pw;
  n0 = forward_lanes(*this, g, in, n0, n1, [&](int b0, int nb, const float* yl) {
    float* c = room(tl.out, (win ? qsize : ysize) * kLanes);
    if (win) {
      kt.relu_maxpool_lanes_win_f32(yl, out_ch, g.oh, g.ow, has_bias ? bias.data() : nullptr, nb, c, win + b0 * qsize);
      kt.from_lanes_f32(c, qsize, nb, pool_out.data() + b0 * qsize, qsize);
      return;
    }
    kt.from_lanes_f32(yl, ysize, nb, c, ysize);
    for (int b = 0; b < nb; ++b)
      for (int o = 0; o < out_ch; ++o) epilogue(b0 + b, o, c + b * ysize + int64_t{o} * g.p(), g.ow);
  });
  conv_rows(*this, g, in, n0, n1, [&](int b, const float* c) {
    for (int o = 0; o < out_ch; ++o) epilogue(b, o, c + int64_t{o} * N, wp);
  });
}

void Conv2d::forward(const Tensor& in, Tensor& out, int n0, int n1) {
  Geometry g = geometry(*this, in.shape(), out.shape());
  const int P = g.p(), K = g.kdim(), T = tile_images(P);
  const int64_t in_stride = int64_t{g.c} * g.h * g.w, out_stride = int64_t{out_ch} * P;
  // Stride 1 with more than one output pixel: no im2col (forward_rows).
  if (stride == 1 && P > 1) {
    forward_rows(in, out, n0, n1);
    return;
  }
  // A kernel covering the unpadded image (conv3): each image's im2col column is the image itself,
  // so out[n][OC] = x[n][K] * W^T, a Linear layer.
  if (frozen_.valid && P == 1 && pad == 0 && g.h == kernel && g.w == kernel) {
    frozen_.apply(in.data() + n0 * in_stride, n1 - n0, out_ch, K, has_bias ? bias.data() : nullptr,
                  out.data() + n0 * out_stride);
    return;
  }
  // Not frozen (training: the weights change every step, so transposing them would cost more
  // than it saves): dot products of x's rows with W's rows.
  if (P == 1 && pad == 0 && g.h == kernel && g.w == kernel) {
    const int t = n1 - n0;
    tl.arows.resize(static_cast<size_t>(t));
    tl.brows.resize(static_cast<size_t>(out_ch));
    for (int i = 0; i < t; ++i) tl.arows[size_t(i)] = in.data() + (n0 + i) * in_stride;
    for (int o = 0; o < out_ch; ++o) tl.brows[size_t(o)] = weight.data() + int64_t{o} * K;
    float* y = out.data() + n0 * out_stride;
    kernels().sgemm_nt({t, out_ch, K, tl.arows.data(), tl.brows.data(), y, out_ch, false});
    if (has_bias)
      for (int i = 0; i < t; ++i)
        for (int o = 0; o < out_ch; ++o) y[int64_t{i} * out_ch + o] += bias[o];
    return;
  }
  const SgemmFn sgemm = kernels().sgemm;
  for (int b = n0; b < n1; b += T) {
    int t = std::min(T, n1 - b);
    int64_t cols = int64_t{t} * P;
    room(tl.col, K * cols);
    im2col(g, in.data() + b * in_stride, t, tl.col.data(), cols);
    float* y = out.data() + b * out_stride;
    float* c = t > 1 ? room(tl.out, out_ch * cols) : y;
    sgemm({out_ch, static_cast<int>(cols), K, weight.data(), K, 1, tl.col.data(), cols, 1, c, cols, false});
    for (int n = 0; n < t; ++n)
      for (int o = 0; o < out_ch; ++o) {
        float* dst = y + n * out_stride + int64_t{o} * P;
        const float* src = c + int64_t{o} * cols + int64_t{n} * P;
        float bv = has_bias ? bias[o] : 0.0f;
        if (src != dst || has_bias)
          for (int p = 0; p < P; ++p) dst[p] = src[p] + bv;
      }
  }
}

void Conv2d::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* din, int n0, int n1,
                      const std::vector<Tensor*>& grads) {
  Geometry g = geometry(*this, in.shape(), out.shape());
  const int P = g.p(), K = g.kdim(), T = tile_images(P);
  const int64_t in_stride = int64_t{g.c} * g.h * g.w, out_stride = int64_t{out_ch} * P;
  const SgemmFn sgemm = kernels().sgemm;
  // A kernel covering the unpadded image (conv3), as in forward: a Linear layer on x[n][K], so
  // dX[n][K] = dY W over the whole slice, and dW[OC, K] += dY^T X (here or by rows, grads_by_rows).
  if (P == 1 && pad == 0 && g.h == kernel && g.w == kernel) {
    const int t = n1 - n0;
    const float* dy = dout.data() + n0 * out_stride;  // [t][OC]
    if (din) sgemm({t, K, out_ch, dy, out_ch, 1, weight.data(), K, 1, din->data() + n0 * in_stride, K, false});
    if (!grads.empty())
      dense_grads_by_rows(in.data() + n0 * in_stride, dy, t, K, out_ch, 0, out_ch, grads[0]->data(),
                          has_bias ? grads[1]->data() : nullptr, /*accumulate=*/true);
    return;
  }
  if (has_bias)
    for (int b = n0; b < n1; ++b)
      for (int o = 0; o < out_ch; ++o) {
        const float* d = dout.data() + b * out_stride + int64_t{o} * P;
        float sum = 0.0f;
        for (int p = 0; p < P; ++p) sum += d[p];
        (*grads[1])[o] += sum;
      }
  // The lane kernels where they fit, on groups of at least kMinLanes images; the rest as below.
  if (lanes(*this, g)) {
    const KernelTable& kt = kernels();
    float* yl = room(tl.yl, out_stride * kLanes);
    n0 = lane_groups(n0, n1, [&](int b0, int nb) {
      kt.to_lanes_f32(dout.data() + b0 * out_stride, out_stride, nb, out_stride, yl);
      backward_lanes(in, yl, din, b0, nb, grads);
    });
    if (n0 == n1) return;
  }
  // Stride 1 with more than one output pixel: dW without im2col (weight_grad_rows).
  const bool rows = stride == 1 && P > 1;
  if (rows) weight_grad_rows(*this, g, in, dout, n0, n1, *grads[0]);
  if (rows && !din) return;
  if (din) std::fill(din->data() + n0 * in_stride, din->data() + n1 * in_stride, 0.0f);
  for (int b = n0; b < n1; b += T) {
    int t = std::min(T, n1 - b);
    int64_t cols = int64_t{t} * P;
    // dout tile as [OC, t*P]; a single image is already laid out that way.
    const float* dy = dout.data() + b * out_stride;
    if (t > 1) {
      room(tl.out, out_ch * cols);
      for (int n = 0; n < t; ++n)
        for (int o = 0; o < out_ch; ++o)
          std::copy_n(dy + n * out_stride + int64_t{o} * P, P, tl.out.data() + int64_t{o} * cols + int64_t{n} * P);
      dy = tl.out.data();
    }
    if (!rows) {  // dW[OC, K] += dy[OC, cols] * col^T
      room(tl.col, K * cols);
      im2col(g, in.data() + b * in_stride, t, tl.col.data(), cols);
      sgemm({out_ch, K, static_cast<int>(cols), dy, cols, 1, tl.col.data(), 1, cols, grads[0]->data(), K, true});
    }
    if (din) {
      // dcol[K, cols] = W^T * dy
      room(tl.grad, K * cols);
      sgemm({K, static_cast<int>(cols), out_ch, weight.data(), 1, K, dy, cols, 1, tl.grad.data(), cols, false});
      kernels().col2im_f32({tl.grad.data(), cols, t, g.c, g.h, g.w, g.k, g.stride, g.pad, g.oh, g.ow,
                            din->data() + b * in_stride});
    }
  }
}

// dW and dX of lane group [b0, b0 + nb) from its output gradient in lanes (dyl, kLanes * OC*OH*OW).
void Conv2d::backward_lanes(const Tensor& in, float* dyl, Tensor* din, int b0, int nb, const std::vector<Tensor*>& grads) {
  const KernelTable& kt = kernels();
  const int64_t in_stride = in.numel() / in.dim(0);
  float* xl = room(tl.xl, in_stride * kLanes);
  kt.to_lanes_f32(in.data() + b0 * in_stride, in_stride, nb, in_stride, xl);
  const ConvLanesArgs a{in.dim(1), in.dim(2), in.dim(3), out_ch, kernel, weight.data(), xl, dyl, grads[0]->data()};
  kt.conv_lanes_dw(a);
  if (!din) return;
  kt.conv_lanes_dx(a);  // overwrites xl with dX
  kt.from_lanes_f32(xl, in_stride, nb, din->data() + b0 * in_stride, in_stride);
}

void Conv2d::backward_relu_maxpool(const Tensor& in, const uint8_t* win, const Tensor& dq, Tensor& dy, Tensor* din,
                                   int n0, int n1, const std::vector<Tensor*>& grads) {
  const Geometry g = geometry(*this, in.shape(), dy.shape());
  const int ph = dq.dim(2), pw = dq.dim(3);
  const int64_t qsize = int64_t{out_ch} * ph * pw, ysize = int64_t{out_ch} * g.p();
  const KernelTable& kt = kernels();
  if (lanes(*this, g)) {
    float* ql = room(tl.out, qsize * kLanes);
    float* yl = room(tl.yl, ysize * kLanes);
    n0 = lane_groups(n0, n1, [&](int b0, int nb) {
      kt.to_lanes_f32(dq.data() + b0 * qsize, qsize, nb, qsize, ql);
      kt.relu_maxpool_backward_lanes_win_f32(win + b0 * qsize, ql, out_ch, g.oh, g.ow, nb, yl);
      if (has_bias)  // per image, the sum over its pixels, then images in order: backward()'s sums
        for (int o = 0; o < out_ch; ++o) {
          float sum[kLanes] = {};
          for (int64_t p = 0; p < g.p(); ++p)
            for (int l = 0; l < kLanes; ++l) sum[l] += yl[(o * g.p() + p) * kLanes + l];
          for (int l = 0; l < nb; ++l) (*grads[1])[o] += sum[l];
        }
      backward_lanes(in, yl, din, b0, nb, grads);
    });
  }
  // The images off the lanes: window codes per plane, dY in NCHW.
  for (int64_t pl = int64_t{n0} * out_ch; pl < int64_t{n1} * out_ch; ++pl)
    kt.relu_maxpool_backward_win_f32(win + pl * ph * pw, dq.data() + pl * ph * pw, g.oh, g.ow, dy.data() + pl * g.p());
  if (n0 < n1) backward(in, dy, dy, din, n0, n1, grads);
}

int Conv2d::grad_rows(const Shape& in) const {
  return pad == 0 && in.size() == 4 && in[2] == kernel && in[3] == kernel ? out_ch : 0;
}

void Conv2d::grads_by_rows(const Tensor& in, const Tensor& dout, int o0, int o1, const std::vector<Tensor*>& grads,
                           bool accumulate) {
  dense_grads_by_rows(in.data(), dout.data(), in.dim(0), in_ch * kernel * kernel, out_ch, o0, o1, grads[0]->data(),
                      has_bias ? grads[1]->data() : nullptr, accumulate);
}

std::vector<Param> Conv2d::params() {
  std::vector<Param> p{{"weight", &weight, &dweight}};
  if (has_bias) p.push_back({"bias", &bias, &dbias});
  return p;
}

int64_t Conv2d::macs(const Shape& in) const {
  Shape o = output_shape({1, in[0], in[1], in[2]});
  return int64_t{out_ch} * o[2] * o[3] * in_ch * kernel * kernel;
}

std::string Conv2d::kernel_str() const {
  return fmt::format("[{}, {}]", kernel, kernel);  // not "[" + string: GCC 12's false -Wrestrict
}

nlohmann::json Conv2d::spec() const {
  return {{"type", "Conv2d"}, {"in", in_ch}, {"out", out_ch}, {"kernel", kernel},
          {"stride", stride}, {"pad", pad}, {"bias", has_bias}};
}

void Conv2d::init(Rng& rng) {
  float bound = 1.0f / std::sqrt(static_cast<float>(in_ch * kernel * kernel));
  for (int64_t i = 0; i < weight.numel(); ++i) weight[i] = rng.uniform(-bound, bound);
  if (has_bias)
    for (int64_t i = 0; i < bias.numel(); ++i) bias[i] = rng.uniform(-bound, bound);
}

}  // namespace lowbit
