// Scalar reference of im2col into the packed GEMM layout, of the plain-matrix pack, and the
// weight preparation helpers (contracts in kernels/qkernels.h). One output byte per iteration,
// written for obviousness, not speed.
#include <cstdlib>
#include <string>

#include "kernels/qkernels.h"
#include "lowbit/core.h"

namespace lowbit {

void qim2col_u8_ref(const QIm2colArgs& a) {
  const int oh = qconv_out_size(a.h, a.kh, a.stride, a.pad);
  const int ow = qconv_out_size(a.w, a.kw, a.stride, a.pad);
  const int k_real = a.c * a.kh * a.kw;
  const int k4 = qk4(k_real);
  const int64_t n_all = int64_t{a.nb} * oh * ow;
  for (int k = 0; k < k4; ++k) {
    const int ci = k / (a.kh * a.kw), i = (k / a.kw) % a.kh, j = k % a.kw;
    for (int b = 0; b < a.nb; ++b) {
      for (int y = 0; y < oh; ++y) {
        for (int x = 0; x < ow; ++x) {
          const int64_t col = (int64_t{b} * oh + y) * ow + x;
          const int r = y * a.stride - a.pad + i, s = x * a.stride - a.pad + j;
          uint8_t v = 0;  // rows k >= K
          if (k < k_real) {
            v = a.pad_value;
            if (r >= 0 && r < a.h && s >= 0 && s < a.w)
              v = a.in[b * a.in_bstride + ci * a.in_cstride + int64_t{r} * a.w + s];
          }
          a.out[(k / 4) * n_all * 4 + col * 4 + k % 4] = v;
        }
      }
    }
  }
}

void qpack_u8_ref(const uint8_t* x, int64_t rs, int64_t cs, int k, int n, uint8_t* out) {
  const int k4 = qk4(k);
  for (int p = 0; p < k4; ++p)
    for (int j = 0; j < n; ++j)
      out[int64_t{p / 4} * n * 4 + int64_t{j} * 4 + p % 4] = p < k ? x[p * rs + j * cs] : 0;
}

void qpad_weights_s8(const int8_t* w, int m, int k, int64_t ldw_in, int8_t* out) {
  const int k4 = qk4(k);
  for (int i = 0; i < m; ++i)
    for (int p = 0; p < k4; ++p) out[int64_t{i} * k4 + p] = p < k ? w[i * ldw_in + p] : int8_t{0};
}

void qpack_weights_t_s8(const int8_t* w, int m, int k, int64_t ldw_in, int8_t* out) {
  const int k4 = qk4(k), m16 = (m + 15) & ~15;
  for (int p = 0; p < k4; ++p)
    for (int i = 0; i < m16; ++i)
      out[int64_t{p / 4} * m16 * 4 + i * 4 + p % 4] = i < m && p < k ? w[i * ldw_in + p] : int8_t{0};
}

void qbias_eff(const int8_t* w, int m, int k, int64_t ldw, const int32_t* bias, int32_t z_in_u,
               int32_t* bias_eff, const char* what) {
  const int64_t limit = int64_t{1} << 31;
  for (int i = 0; i < m; ++i) {
    int64_t wsum = 0;
    for (int p = 0; p < k; ++p) wsum += w[i * ldw + p];
    const int64_t be = (bias ? int64_t{bias[i]} : 0) - int64_t{z_in_u} * wsum;
    if (std::llabs(be) + int64_t{255} * 128 * k >= limit)
      throw Error(std::string(what) + ": int32 accumulator may overflow in output channel " +
                  std::to_string(i) + " (bias_eff " + std::to_string(be) + ", K " +
                  std::to_string(k) + ")");
    bias_eff[i] = static_cast<int32_t>(be);
  }
}

}  // namespace lowbit
