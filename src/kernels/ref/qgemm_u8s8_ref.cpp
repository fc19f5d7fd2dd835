// Scalar reference of the u8 x s8 GEMM with fused requantization: the specification and the
// test oracle of qgemm_u8s8_* (contract in kernels/qkernels.h). Plain loops, int64 sums.
#include "kernels/qkernels.h"

namespace lowbit {

// Address offset of output element C(i, j) (see QGemmArgs).
static int64_t qgemm_out_offset(const QGemmArgs& a, int i, int j) {
  if (a.cols_per_image <= 0) return int64_t{i} * a.ldc + j;
  return int64_t{i} * a.ldc + int64_t{j / a.cols_per_image} * a.ldc_image + j % a.cols_per_image;
}

void qgemm_u8s8_ref(const QGemmArgs& a) {
  const int64_t n = a.n;
  for (int i = 0; i < a.m; ++i) {
    for (int j = 0; j < a.n; ++j) {
      int64_t sum = 0;
      for (int p = 0; p < a.k; ++p) {
        const uint8_t xv = a.x[(p / 4) * n * 4 + j * 4 + p % 4];  // X(p, j), packed
        sum += int64_t{a.w[i * a.ldw + p]} * int64_t{xv};
      }
      // Modulo 2^32, like the SIMD accumulators (C++20 defines this conversion).
      const auto acc = static_cast<int32_t>(static_cast<uint32_t>(sum + a.bias[i]));
      const int64_t off = qgemm_out_offset(a, i, j);
      if (a.c_i32)
        a.c_i32[off] = acc;
      else
        a.c_u8[off] = requantize_ref(acc, *a.rq, a.variant, i);
    }
  }
}

}  // namespace lowbit
