// FP32 GEMM kernels: a naive reference and blocked AVX2 / AVX-512 versions.
// All share SgemmArgs (dispatch.h). The SIMD drivers pack A into MR-row panels and B into
// NR-column panels (sgemm_pack.cpp, generic code) and call an MR x NR register-tile micro-kernel.
#pragma once

#include "kernels/dispatch.h"

namespace lowbit {

struct FakeQuantArgs;  // lowbit/qat.h

void sgemm_ref(const SgemmArgs& g);
void sgemm_6x16__avx2(const SgemmArgs& g);
void sgemm_6x32__avx512(const SgemmArgs& g);
void sgemm_rows_ref(const SgemmRowsArgs& g);
void sgemm_rows__avx2(const SgemmRowsArgs& g);
void sgemm_rows__avx512(const SgemmRowsArgs& g);
void sgemm_nt_ref(const SgemmNtArgs& g);
void sgemm_nt__avx2(const SgemmNtArgs& g);
void sgemm_nt__avx512(const SgemmNtArgs& g);
void bias_relu_maxpool_f32_ref(const float* c, int64_t ldc, int oh, int ow, float bias, float* y, float* r, float* q,
                               bool spill);
void bias_relu_maxpool_f32__avx512(const float* c, int64_t ldc, int oh, int ow, float bias, float* y, float* r,
                                   float* q, bool spill);
void bias_relu_maxpool_win_f32_ref(const float* c, int64_t ldc, int oh, int ow, float bias, float* q, uint8_t* win);
void bias_relu_maxpool_win_f32__avx512(const float* c, int64_t ldc, int oh, int ow, float bias, float* q, uint8_t* win);
void relu_maxpool_backward_win_f32_ref(const uint8_t* win, const float* dq, int oh, int ow, float* dy);
void relu_maxpool_backward_win_f32__avx512(const uint8_t* win, const float* dq, int oh, int ow, float* dy);
void maxpool2x2_f32_ref(const float* x, int oh, int ow, float* q);
void maxpool2x2_f32__avx512(const float* x, int oh, int ow, float* q);
void col2im_f32_ref(const Col2imArgs& a);
void col2im_f32__avx512(const Col2imArgs& a);
void relu_maxpool_backward_f32_ref(const float* y, const float* r, const float* dq, int oh, int ow, float* dy);
void relu_maxpool_backward_f32__avx512(const float* y, const float* r, const float* dq, int oh, int ow, float* dy);

void conv_lanes_fwd_ref(const ConvLanesArgs& a);
void conv_lanes_dw_ref(const ConvLanesArgs& a);
void conv_lanes_dx_ref(const ConvLanesArgs& a);
void to_lanes_f32_ref(const float* src, int64_t stride, int n, int64_t count, float* dst);
void relu_maxpool_lanes_win_f32_ref(const float* y, int oc, int oh, int ow, const float* bias, int n, float* q,
                                    uint8_t* win);
void relu_maxpool_backward_lanes_win_f32_ref(const uint8_t* win, const float* dq, int oc, int oh, int ow, int n,
                                             float* dy);
void relu_maxpool_lanes_win_f32__avx512(const float* y, int oc, int oh, int ow, const float* bias, int n, float* q,
                                        uint8_t* win);
void relu_maxpool_backward_lanes_win_f32__avx512(const uint8_t* win, const float* dq, int oc, int oh, int ow, int n,
                                                 float* dy);
void from_lanes_f32_ref(const float* src, int64_t count, int n, float* dst, int64_t stride);
void fake_quant_forward__avx512(const float* x, int64_t n, const FakeQuantArgs& a, float* out);
void fake_quant_forward_minmax__avx512(const float* x, int64_t n, const FakeQuantArgs& a, float* out, float* xmin,
                                       float* xmax);
void fake_quant_backward_clipped__avx512(const float* x, const float* dy, int64_t n, const FakeQuantArgs& a,
                                         float* dx);
double fake_quant_backward_lsq__avx512(const float* x, const float* dy, int64_t n, const FakeQuantArgs& a, float* dx);
void conv5_dw_f32_ref(const ConvDwArgs& a);
void conv5_dw_f32__avx512(const ConvDwArgs& a);
void conv_lanes_fwd__avx512(const ConvLanesArgs& a);
void conv_lanes_dw__avx512(const ConvLanesArgs& a);
void conv_lanes_dx__avx512(const ConvLanesArgs& a);
void to_lanes_f32__avx512(const float* src, int64_t stride, int n, int64_t count, float* dst);
void from_lanes_f32__avx512(const float* src, int64_t count, int n, float* dst, int64_t stride);

// Blocking shared by the SIMD drivers: K in slices of kSgemmKc, N in slices of kSgemmNc.
constexpr int kSgemmKc = 256;
constexpr int kSgemmNc = 2048;

// Packs A(i0.., p0..) [mc x kc] into panels of mr rows: out[panel][p][r], zero-padded rows.
void sgemm_pack_a(const SgemmArgs& g, int i0, int mc, int p0, int kc, int mr, float* out);
// Packs B(p0.., j0..) [kc x nc] into panels of nr columns: out[panel][p][c], zero-padded columns.
void sgemm_pack_b(const SgemmArgs& g, int p0, int kc, int j0, int nc, int nr, float* out);

// Thread-local scratch for packing, grown on demand (not inside micro-kernels).
float* sgemm_scratch_a(int64_t floats);
float* sgemm_scratch_b(int64_t floats);

}  // namespace lowbit

namespace lowbit {
// c[rows x cols] (+)= ap[kc][mr] * b[kc][nr], the register tile of a SIMD GEMM. Rows of b are
// ldb floats apart: nr for a packed panel, or B's own row stride when B is read in place.
using SgemmUkernel = void (*)(int kc, const float* ap, const float* b, int64_t ldb, float* c,
                              int64_t ldc, int rows, int cols, bool accumulate);
// The blocked driver shared by the SIMD versions: packs and walks the tiles.
void sgemm_blocked(const SgemmArgs& g, int mr, int nr, SgemmUkernel ukernel);
// The driver of sgemm_rows: nothing is packed. The micro-kernel reads A through mr row pointers
// (arows[r][p], mr <= 8) and B through its row pointers (brows[p][j + c]); `half` (may be null)
// takes a last panel of at most nr / 2 columns.
using SgemmRowsUkernel = void (*)(int kc, const float* const* arows, const float* const* brows, int64_t j, float* c,
                                  int64_t ldc, int nrows, int cols, bool accumulate);
void sgemm_rows_blocked(const SgemmRowsArgs& g, int mr, int nr, SgemmRowsUkernel ukernel, SgemmRowsUkernel half);
}  // namespace lowbit
