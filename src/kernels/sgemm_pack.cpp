// Packing for the blocked FP32 GEMM (generic C++, no ISA flags).
#include <algorithm>
#include <cstdlib>
#include <memory>

#include "kernels/sgemm.h"
#include "lowbit/core.h"

namespace lowbit {

// Loops run along the source's contiguous direction, writing with the panel's stride.
void sgemm_pack_a(const SgemmArgs& g, int i0, int mc, int p0, int kc, int mr, float* out) {
  for (int ip = 0; ip < mc; ip += mr, out += int64_t{mr} * kc) {
    int rows = mc - ip < mr ? mc - ip : mr;
    const float* src = g.a + p0 * g.cs_a + (i0 + ip) * g.rs_a;
    if (g.cs_a == 1) {  // rows of A are contiguous in p
      for (int r = 0; r < rows; ++r)
        for (int p = 0; p < kc; ++p) out[p * mr + r] = src[r * g.rs_a + p];
    } else {
      for (int p = 0; p < kc; ++p)
        for (int r = 0; r < rows; ++r) out[p * mr + r] = src[p * g.cs_a + r * g.rs_a];
    }
    for (int r = rows; r < mr; ++r)
      for (int p = 0; p < kc; ++p) out[p * mr + r] = 0.0f;
  }
}

void sgemm_pack_b(const SgemmArgs& g, int p0, int kc, int j0, int nc, int nr, float* out) {
  for (int jp = 0; jp < nc; jp += nr, out += int64_t{nr} * kc) {
    int cols = nc - jp < nr ? nc - jp : nr;
    const float* src = g.b + p0 * g.rs_b + (j0 + jp) * g.cs_b;
    if (g.rs_b == 1) {  // columns of B are contiguous in p
      for (int c = 0; c < cols; ++c)
        for (int p = 0; p < kc; ++p) out[p * nr + c] = src[c * g.cs_b + p];
    } else {
      for (int p = 0; p < kc; ++p)
        for (int c = 0; c < cols; ++c) out[p * nr + c] = src[p * g.rs_b + c * g.cs_b];
    }
    for (int p = 0; p < kc; ++p)
      for (int c = cols; c < nr; ++c) out[p * nr + c] = 0.0f;
  }
}

namespace {
struct Scratch {
  std::unique_ptr<float[], AlignedFree> buf;
  int64_t size = 0;
  float* get(int64_t floats) {
    if (floats > size) {
      size_t bytes = (static_cast<size_t>(floats) * sizeof(float) + 63) / 64 * 64;
      buf.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
      if (!buf) throw Error("out of memory for GEMM packing buffers");
      size = floats;
    }
    return buf.get();
  }
};
thread_local Scratch tl_a, tl_b;
}  // namespace

float* sgemm_scratch_a(int64_t floats) { return tl_a.get(floats); }
float* sgemm_scratch_b(int64_t floats) { return tl_b.get(floats); }

void sgemm_blocked(const SgemmArgs& g, int mr, int nr, SgemmUkernel ukernel) {
  if (g.m <= 0 || g.n <= 0) return;
  if (g.k <= 0) {
    if (!g.accumulate)
      for (int i = 0; i < g.m; ++i) std::fill(g.c + i * g.ldc, g.c + i * g.ldc + g.n, 0.0f);
    return;
  }
  int m_panels = (g.m + mr - 1) / mr;
  for (int jc = 0; jc < g.n; jc += kSgemmNc) {
    int nc = std::min(kSgemmNc, g.n - jc);
    int n_panels = (nc + nr - 1) / nr;
    for (int pc = 0; pc < g.k; pc += kSgemmKc) {
      int kc = std::min(kSgemmKc, g.k - pc);
      // B is read in place when its rows are contiguous; only a ragged last panel is packed.
      const bool in_place = g.cs_b == 1;
      const int packed_from = in_place ? nc / nr * nr : 0;
      float* bp = sgemm_scratch_b(int64_t{n_panels} * nr * kc);
      float* ap = sgemm_scratch_a(int64_t{m_panels} * mr * kc);
      if (packed_from < nc) sgemm_pack_b(g, pc, kc, jc + packed_from, nc - packed_from, nr, bp);
      sgemm_pack_a(g, 0, g.m, pc, kc, mr, ap);
      bool acc = g.accumulate || pc > 0;
      for (int jr = 0; jr < n_panels; ++jr) {
        int j = jr * nr, cols = std::min(nr, nc - j);
        const float* b = j >= packed_from ? bp + int64_t{(j - packed_from) / nr} * nr * kc : g.b + pc * g.rs_b + jc + j;
        int64_t ldb = j >= packed_from ? nr : g.rs_b;
        for (int ir = 0; ir < m_panels; ++ir) {
          int rows = std::min(mr, g.m - ir * mr);
          ukernel(kc, ap + int64_t{ir} * mr * kc, b, ldb, g.c + int64_t{ir} * mr * g.ldc + jc + j, g.ldc, rows, cols, acc);
        }
      }
    }
  }
}

void sgemm_rows_blocked(const SgemmRowsArgs& g, int mr, int nr, SgemmRowsUkernel ukernel, SgemmRowsUkernel half) {
  if (g.m <= 0 || g.n <= 0) return;
  if (g.k <= 0) {
    if (!g.accumulate)
      for (int i = 0; i < g.m; ++i) std::fill(g.c + i * g.ldc, g.c + i * g.ldc + g.n, 0.0f);
    return;
  }
  // A is read in place: packing it cost as much as a small convolution's multiply-adds (it is
  // a conv layer's weights, packed again for every image). Rows past m repeat the last row; the
  // micro-kernel does not store them.
  const float* arows[8];
  for (int i0 = 0; i0 < g.m; i0 += mr) {
    for (int r = 0; r < mr; ++r) {
      const int i = std::min(i0 + r, g.m - 1);
      arows[r] = g.a_rows ? g.a_rows[i] : g.a + int64_t{i} * g.lda;
    }
    for (int j = 0; j < g.n; j += nr) {
      const int cols = std::min(nr, g.n - j);
      (half && 2 * cols <= nr ? half : ukernel)(g.k, arows, g.b_rows, j, g.c + int64_t{i0} * g.ldc + j, g.ldc,
                                                 std::min(mr, g.m - i0), cols, g.accumulate);
    }
  }
}

}  // namespace lowbit
