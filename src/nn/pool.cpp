// Max and average pooling on NCHW planes (no padding). Max pooling routes the gradient to the
// first arg-max of each window, recomputed from the forward input.
#include <fmt/core.h>

#include <algorithm>

#include "kernels/dispatch.h"
#include "lowbit/nn.h"

namespace lowbit {

Shape Pool2d::output_shape(const Shape& in) const {
  if (in.size() != 4) throw Error(type() + " expects input (N, C, H, W), got " + shape_str(in));
  if (in[2] < kernel || in[3] < kernel)
    throw Error(type() + " kernel " + std::to_string(kernel) + " larger than input " + shape_str(in));
  return {in[0], in[1], (in[2] - kernel) / stride + 1, (in[3] - kernel) / stride + 1};
}

void Pool2d::forward(const Tensor& in, Tensor& out, int n0, int n1) {
  const int C = in.dim(1), H = in.dim(2), W = in.dim(3);
  const int OH = out.dim(2), OW = out.dim(3);
  const float inv = 1.0f / static_cast<float>(kernel * kernel);
  if (kernel == 2 && stride == 2 && kind == PoolKind::max) {  // LeNet's case: the SIMD kernel
    const Maxpool2x2Fn k = kernels().maxpool2x2_f32;
    if (H % 2 == 0) {  // row pairs never straddle two planes: all of them as one tall plane
      k(in.data() + int64_t{n0} * C * H * W, (n1 - n0) * C * H, W, out.data() + int64_t{n0} * C * OH * OW);
      return;
    }
    for (int64_t pl = int64_t{n0} * C; pl < int64_t{n1} * C; ++pl) k(in.data() + pl * H * W, H, W, out.data() + pl * OH * OW);
    return;
  }
  for (int pl = n0 * C; pl < n1 * C; ++pl) {
    const float* x = in.data() + int64_t{pl} * H * W;
    float* y = out.data() + int64_t{pl} * OH * OW;
    for (int oy = 0; oy < OH; ++oy)
      for (int ox = 0; ox < OW; ++ox) {
        const float* win = x + oy * stride * W + ox * stride;
        float acc = kind == PoolKind::max ? win[0] : 0.0f;
        for (int ky = 0; ky < kernel; ++ky)
          for (int kx = 0; kx < kernel; ++kx) {
            float v = win[ky * W + kx];
            if (kind == PoolKind::max) acc = v > acc ? v : acc;
            else acc += v;
          }
        y[oy * OW + ox] = kind == PoolKind::max ? acc : acc * inv;
      }
  }
}

void Pool2d::backward(const Tensor& in, const Tensor& out, const Tensor& dout, Tensor* din, int n0, int n1,
                      const std::vector<Tensor*>&) {
  if (!din) return;
  const int C = in.dim(1), H = in.dim(2), W = in.dim(3);
  const int OH = out.dim(2), OW = out.dim(3);
  if (kernel == 2 && stride == 2 && kind == PoolKind::max) {  // LeNet's case: the SIMD kernel, same bits
    const ReluMaxpoolBackwardFn k = kernels().relu_maxpool_backward_f32;
    if (H % 2 == 0) {  // one tall plane, as in forward
      const int64_t pl = int64_t{n0} * C;
      k(nullptr, in.data() + pl * H * W, dout.data() + pl * OH * OW, (n1 - n0) * C * H, W, din->data() + pl * H * W);
      return;
    }
    for (int64_t pl = int64_t{n0} * C; pl < int64_t{n1} * C; ++pl)
      k(nullptr, in.data() + pl * H * W, dout.data() + pl * OH * OW, H, W, din->data() + pl * H * W);
    return;
  }
  std::fill(din->data() + int64_t{n0} * C * H * W, din->data() + int64_t{n1} * C * H * W, 0.0f);
  const float inv = 1.0f / static_cast<float>(kernel * kernel);
  for (int pl = n0 * C; pl < n1 * C; ++pl) {
    const float* x = in.data() + int64_t{pl} * H * W;
    const float* dy = dout.data() + int64_t{pl} * OH * OW;
    float* dx = din->data() + int64_t{pl} * H * W;
    for (int oy = 0; oy < OH; ++oy)
      for (int ox = 0; ox < OW; ++ox) {
        int base = oy * stride * W + ox * stride;
        float g = dy[oy * OW + ox];
        if (kind == PoolKind::avg) {
          for (int ky = 0; ky < kernel; ++ky)
            for (int kx = 0; kx < kernel; ++kx) dx[base + ky * W + kx] += g * inv;
          continue;
        }
        int best = base;
        for (int ky = 0; ky < kernel; ++ky)
          for (int kx = 0; kx < kernel; ++kx)
            if (x[base + ky * W + kx] > x[best]) best = base + ky * W + kx;
        dx[best] += g;
      }
  }
}

std::string Pool2d::kernel_str() const {
  return fmt::format("[{}, {}]", kernel, kernel);  // not "[" + string: GCC 12's false -Wrestrict
}

nlohmann::json Pool2d::spec() const {
  return {{"type", type()}, {"kernel", kernel}, {"stride", stride}};
}

}  // namespace lowbit
