// QAT's fake quantization loops (train/fake_quant_loops.h) compiled for AVX-512: 16 floats per
// vector instead of the generic build's 4, the same bits.
#include "kernels/sgemm.h"
#include "train/fake_quant_loops.h"

namespace lowbit {

void fake_quant_forward__avx512(const float* x, int64_t n, const FakeQuantArgs& a, float* out) {
  fq_forward(x, n, a, out);
}
void fake_quant_forward_minmax__avx512(const float* x, int64_t n, const FakeQuantArgs& a, float* out, float* xmin,
                                       float* xmax) {
  fq_forward_minmax(x, n, a, out, xmin, xmax);
}
void fake_quant_backward_clipped__avx512(const float* x, const float* dy, int64_t n, const FakeQuantArgs& a,
                                         float* dx) {
  fq_backward_clipped(x, dy, n, a, dx);
}
double fake_quant_backward_lsq__avx512(const float* x, const float* dy, int64_t n, const FakeQuantArgs& a, float* dx) {
  return fq_backward_lsq(x, dy, n, a, dx);
}

}  // namespace lowbit
