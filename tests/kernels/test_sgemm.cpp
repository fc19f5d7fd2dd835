// Every FP32 GEMM the CPU supports against the naive reference, over shapes below, at and above
// the register tiles (6 rows; 16 and 32 columns) and the K and N blocks, with transposed operands
// and accumulation. Tolerance grows with sqrt(K).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/sgemm.h"
#include "lowbit/core.h"
#include "lowbit/nn.h"

namespace lowbit {
namespace {

TEST(Sgemm, EveryIsaMatchesReference) {
  Rng rng(42);
  const int ms[] = {1, 5, 6, 7, 12, 13, 17};
  const int ns[] = {1, 15, 16, 17, 31, 32, 33, 65, 2049};
  const int ks[] = {1, 4, 25, 255, 256, 257};
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t) continue;
    for (int m : ms)
      for (int n : ns)
        for (int k : ks)
          for (int variant = 0; variant < 3; ++variant) {
            if (n == 2049 && k > 25) continue;  // keep the test fast; N blocking is covered
            bool trans_a = variant == 1, trans_b = variant == 2, accumulate = variant != 0;
            std::vector<float> a(size_t(m) * k), b(size_t(k) * n), c(size_t(m) * n), r;
            for (float& v : a) v = rng.uniform(-1, 1);
            for (float& v : b) v = rng.uniform(-1, 1);
            for (float& v : c) v = rng.uniform(-1, 1);
            r = c;
            SgemmArgs g{m, n, k, a.data(), trans_a ? 1 : k, trans_a ? m : 1, b.data(), trans_b ? 1 : n,
                        trans_b ? k : 1, c.data(), n, accumulate};
            t->sgemm(g);
            SgemmArgs gr = g;
            gr.c = r.data();
            sgemm_ref(gr);
            const float tol = 8e-6f * std::sqrt(static_cast<float>(k));
            for (size_t i = 0; i < c.size(); ++i)
              ASSERT_NEAR(c[i], r[i], tol) << isa_name(isa) << " m=" << m << " n=" << n << " k=" << k
                                           << " variant=" << variant << " index=" << i;
          }
  }
}

// sgemm_rows: B given by row pointers into one buffer at arbitrary (overlapping) offsets, as a
// convolution's rows are; each row readable kSgemmRowsSlack floats past n - 1 and no further
// (the buffer ends there, so AddressSanitizer catches an overread). C has a wider ldc.
TEST(Sgemm, RowsEveryIsaMatchesReference) {
  Rng rng(43);
  const int ms[] = {1, 5, 6, 7, 8, 16, 17, 24};  // multiples of 8 take the 8-row tiles
  const int ns[] = {1, 15, 16, 17, 31, 32, 33, 100, 136, 892};
  const int ks[] = {1, 5, 25, 150, 255, 256, 257};
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t) continue;
    for (int m : ms)
      for (int n : ns)
        for (int k : ks) {
          const bool accumulate = (m + n + k) % 2 == 0;
          std::vector<float> a(size_t(m) * k), c(size_t(m) * (n + 3)), r;
          for (float& v : a) v = rng.uniform(-1, 1);
          for (float& v : c) v = rng.uniform(-1, 1);
          r = c;
          const int span = 3 * k + 7;  // row p starts at a random offset below span
          std::vector<float> buf(size_t(span) + n + kSgemmRowsSlack);
          for (float& v : buf) v = rng.uniform(-1, 1);
          std::vector<const float*> rows(static_cast<size_t>(k));
          for (auto& row : rows) row = buf.data() + rng.below(static_cast<uint32_t>(span));
          SgemmRowsArgs g{m, n, k, a.data(), k, rows.data(), c.data(), n + 3, accumulate};
          t->sgemm_rows(g);
          SgemmArgs gr{m, n, k, a.data(), k, 1, nullptr, 0, 0, r.data(), n + 3, accumulate};
          // The reference on B copied out into a plain matrix.
          std::vector<float> b(size_t(k) * n);
          for (int p = 0; p < k; ++p)
            for (int j = 0; j < n; ++j) b[size_t(p) * n + j] = rows[size_t(p)][j];
          gr.b = b.data(), gr.rs_b = n, gr.cs_b = 1;
          sgemm_ref(gr);
          const float tol = 8e-6f * std::sqrt(static_cast<float>(k));
          for (size_t i = 0; i < c.size(); ++i)
            ASSERT_NEAR(c[i], r[i], tol) << isa_name(isa) << " m=" << m << " n=" << n << " k=" << k << " index=" << i;
        }
  }
}

// C (+)= sum over segments of A * B^T by row pointers on every ISA against the reference on the
// same rows, within a tolerance that grows with the sum length; each row is its own exactly-sized
// allocation, so ASan reports a read past k. Shapes around the tiles (6 x 4, 4 x 3) and the vector
// lengths (16, 8); 1 to 3 segments.
TEST(Sgemm, NtEveryIsaMatchesReference) {
  Rng rng(45);
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t) continue;
    for (int m : {1, 3, 4, 5, 6, 7, 12, 13, 16})
      for (int n : {1, 2, 3, 4, 5, 7, 16, 25, 150})
        for (int k : {0, 1, 7, 8, 9, 15, 16, 17, 136, 892}) {
          const bool accumulate = (m + n + k) % 2 == 1;
          const int segs = 1 + (m + n + k) % 3;
          // Runs of k floats per segment (as conv output rows): 1 to 3, a_ld and b_ld beyond k.
          const int runs = 1 + (m * n + k) % 3;
          const int64_t a_ld = k + m % 3, b_ld = k + 4 + n % 2;
          std::vector<std::vector<float>> a(size_t(segs) * m), b(size_t(segs) * n);
          std::vector<const float*> ar, br;
          for (auto* rows : {&a, &b})
            for (auto& row : *rows) {
              row.resize(static_cast<size_t>((runs - 1) * (rows == &a ? a_ld : b_ld) + k));
              for (float& v : row) v = rng.uniform(-1, 1);
              (rows == &a ? ar : br).push_back(row.data());
            }
          std::vector<float> c(size_t(m) * (n + 2)), r;
          for (float& v : c) v = rng.uniform(-1, 1);
          r = c;
          t->sgemm_nt({m, n, k, ar.data(), br.data(), c.data(), n + 2, accumulate, segs, runs, a_ld, b_ld});
          sgemm_nt_ref({m, n, k, ar.data(), br.data(), r.data(), n + 2, accumulate, segs, runs, a_ld, b_ld});
          const float tol = 8e-6f * std::sqrt(static_cast<float>(segs * runs * k) + 1);
          for (size_t i = 0; i < c.size(); ++i)
            ASSERT_NEAR(c[i], r[i], tol) << isa_name(isa) << " m=" << m << " n=" << n << " k=" << k << " segments=" << segs
                                         << " index=" << i;
        }
  }
}

// The conv -> ReLU -> max pool epilogue of every ISA against the reference, bit for bit, on
// values with NaN, -0 and ties; odd and even sizes; nothing written past a plane without spill,
// at most 15 floats past it with spill.
TEST(BiasReluMaxpool, EveryIsaMatchesReferenceAndStaysInBounds) {
  Rng rng(44);
  const float kGuard = 12345.0f;
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t) continue;
    for (int oh = 1; oh <= 9; ++oh)
      for (int ow = 1; ow <= 40; ++ow)
        for (bool spill : {false, true}) {
          const int64_t ldc = ow + static_cast<int>(rng.below(5));
          std::vector<float> c(size_t(oh) * size_t(ldc));
          for (float& v : c) {
            const uint64_t kind = rng.below(20);
            v = kind == 0 ? std::nanf("") : kind == 1 ? -0.0f : kind == 2 ? 0.5f : rng.uniform(-2, 2);
          }
          const float bias = rng.below(3) == 0 ? 0.0f : rng.uniform(-1, 1);
          const size_t plane = size_t(oh) * size_t(ow), pooled = size_t(oh / 2) * size_t(ow / 2);
          std::vector<float> y(plane + 32, kGuard), r(plane + 32, kGuard), q(pooled + 32, kGuard);
          std::vector<float> yr = y, rr = r, qr = q;
          bias_relu_maxpool_f32_ref(c.data(), ldc, oh, ow, bias, yr.data(), rr.data(), qr.data(), false);
          t->bias_relu_maxpool_f32(c.data(), ldc, oh, ow, bias, y.data(), r.data(), q.data(), spill);
          const std::string where = std::string(isa_name(isa)) + " oh=" + std::to_string(oh) + " ow=" +
                                    std::to_string(ow) + (spill ? " spill" : "");
          ASSERT_EQ(0, std::memcmp(y.data(), yr.data(), plane * sizeof(float))) << where;
          ASSERT_EQ(0, std::memcmp(r.data(), rr.data(), plane * sizeof(float))) << where;
          ASSERT_EQ(0, std::memcmp(q.data(), qr.data(), (pooled + 32) * sizeof(float))) << where;
          for (size_t i = plane + (spill ? 15 : 0); i < plane + 32; ++i) {
            ASSERT_EQ(y[i], kGuard) << where << " y written at " << i;
            ASSERT_EQ(r[i], kGuard) << where << " r written at " << i;
          }
        }
  }
}

// The reference against the layers it fuses (Conv2d's bias, Activation, Pool2d): NaN, -0, ties.
TEST(BiasReluMaxpool, ReferenceIsReluThenMaxPool) {
  Rng rng(45);
  const int oh = 6, ow = 7;
  Tensor x(Shape{1, 1, oh, ow}), relu(Shape{1, 1, oh, ow}), pool(Shape{1, 1, oh / 2, ow / 2});
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = i % 9 == 0 ? std::nanf("") : i % 9 == 1 ? -0.0f : rng.uniform(-2, 2);
  Activation(ActKind::relu).forward(x, relu);
  Pool2d(PoolKind::max, 2, 2).forward(relu, pool);
  std::vector<float> y(size_t(oh * ow)), r(y.size()), q(size_t(pool.numel()));
  bias_relu_maxpool_f32_ref(x.data(), ow, oh, ow, 0.0f, y.data(), r.data(), q.data(), false);
  for (int64_t i = 0; i < relu.numel(); ++i) ASSERT_EQ(std::memcmp(&r[size_t(i)], &relu[i], 4), 0) << i;
  for (int64_t i = 0; i < pool.numel(); ++i) ASSERT_EQ(std::memcmp(&q[size_t(i)], &pool[i], 4), 0) << i;
}

// The fused backward against the layers' own backward passes (max pool, then ReLU), bit for bit,
// on planes with ties (the first maximum wins), exact zeros, -0 gradients and NaN.
TEST(ReluMaxpoolBackward, ReferenceIsPoolThenReluBackward) {
  Rng rng(46);
  for (int oh : {2, 5, 6})
    for (int ow : {2, 7, 10, 33}) {
      Tensor x(Shape{1, 1, oh, ow}), relu(Shape{1, 1, oh, ow}), pool(Shape{1, 1, oh / 2, ow / 2});
      for (int64_t i = 0; i < x.numel(); ++i) {
        const uint64_t kind = rng.below(8);
        x[i] = kind == 0 ? std::nanf("") : kind == 1 ? -0.0f : kind == 2 ? 0.5f : kind == 3 ? -1.0f : rng.uniform(-2, 2);
      }
      Tensor dq(pool.shape()), dr(x.shape()), dx(x.shape());
      for (int64_t i = 0; i < dq.numel(); ++i) dq[i] = i % 5 == 0 ? -0.0f : rng.uniform(-1, 1);
      Activation act(ActKind::relu);
      Pool2d mp(PoolKind::max, 2, 2);
      act.forward(x, relu);
      mp.forward(relu, pool);
      mp.backward(relu, pool, dq, &dr);
      act.backward(x, relu, dr, &dx);
      std::vector<float> got(size_t(x.numel()), 7.0f);
      relu_maxpool_backward_f32_ref(x.data(), relu.data(), dq.data(), oh, ow, got.data());
      for (int64_t i = 0; i < dx.numel(); ++i)
        ASSERT_EQ(std::memcmp(&got[size_t(i)], &dx[i], 4), 0) << "oh=" << oh << " ow=" << ow << " at " << i;
    }
}

// Without y, the reference is max pooling's backward alone: the gradient to the first maximum of
// each window (strict >, row-major order) even where that maximum is 0 or negative.
TEST(ReluMaxpoolBackward, WithoutYIsMaxPoolBackward) {
  Rng rng(50);
  for (int oh : {2, 3, 6})
    for (int ow : {2, 5, 10}) {
      std::vector<float> x(size_t(oh * ow)), dq(size_t((oh / 2) * (ow / 2))), got(x.size(), 7.0f), want(x.size(), 0.0f);
      for (float& v : x) v = rng.below(3) == 0 ? -1.0f : rng.uniform(-2, 2);  // ties and negatives
      for (float& v : dq) v = rng.uniform(-1, 1);
      for (int py = 0; py < oh / 2; ++py)
        for (int px = 0; px < ow / 2; ++px) {
          int best = 2 * py * ow + 2 * px;
          for (int p : {best + 1, best + ow, best + ow + 1})
            if (x[size_t(p)] > x[size_t(best)]) best = p;
          want[size_t(best)] = dq[size_t(py * (ow / 2) + px)];
        }
      relu_maxpool_backward_f32_ref(nullptr, x.data(), dq.data(), oh, ow, got.data());
      for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(got[i], want[i]) << "oh=" << oh << " ow=" << ow << " at " << i;
    }
}

// Plain 2x2 max pooling (Pool2d's kernel): every ISA gives the reference's bits (NaN kept as
// std::max keeps it, -0 against 0, ties), writes nothing past the pooled plane, for every size
// up to 9 x 40 (odd rows and columns dropped).
TEST(Maxpool2x2, EveryIsaMatchesReferenceAndStaysInBounds) {
  Rng rng(53);
  const float kGuard = 12345.0f;
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t) continue;
    for (int oh = 1; oh <= 9; ++oh)
      for (int ow = 1; ow <= 40; ++ow) {
        std::vector<float> x(size_t(oh) * size_t(ow));
        for (float& v : x) {
          const uint64_t kind = rng.below(8);
          v = kind == 0 ? std::nanf("") : kind == 1 ? -0.0f : kind == 2 ? 0.0f : kind == 3 ? 0.5f : rng.uniform(-2, 2);
        }
        const size_t pooled = size_t(oh / 2) * size_t(ow / 2);
        std::vector<float> want(pooled + 16, kGuard), got = want;
        maxpool2x2_f32_ref(x.data(), oh, ow, want.data());
        t->maxpool2x2_f32(x.data(), oh, ow, got.data());
        ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
            << isa_name(isa) << " oh=" << oh << " ow=" << ow;
        for (size_t i = 0; i < pooled; ++i) {  // the reference is the max of its window
          const size_t py = i / size_t(ow / 2), px = i % size_t(ow / 2), p = 2 * py * size_t(ow) + 2 * px;
          const float a = std::max(x[p], x[p + 1]), b = std::max(x[p + size_t(ow)], x[p + size_t(ow) + 1]);
          const float m = std::max(a, b);
          ASSERT_EQ(0, std::memcmp(&m, &want[i], sizeof(float)));
        }
        for (size_t i = pooled; i < want.size(); ++i) ASSERT_EQ(want[i], kGuard);
      }
  }
}

TEST(ReluMaxpoolBackward, EveryIsaMatchesReference) {
  Rng rng(47);
  const float kGuard = 12345.0f;
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t) continue;
    for (int oh = 1; oh <= 9; ++oh)
      for (int ow = 1; ow <= 40; ++ow) {
        const size_t plane = size_t(oh) * size_t(ow);
        std::vector<float> y(plane), r(plane), dq(size_t(oh / 2) * size_t(ow / 2) + 1);
        for (size_t i = 0; i < plane; ++i) {
          const uint64_t kind = rng.below(10);
          y[i] = kind == 0 ? std::nanf("") : kind == 1 ? -0.0f : kind < 4 ? 0.5f : rng.uniform(-2, 2);
          r[i] = y[i] > 0.0f ? y[i] : 0.0f;
        }
        for (float& v : dq) v = rng.below(6) == 0 ? -0.0f : rng.uniform(-1, 1);
        std::vector<float> want(plane + 16, kGuard), got(plane + 16, kGuard);
        relu_maxpool_backward_f32_ref(y.data(), r.data(), dq.data(), oh, ow, want.data());
        t->relu_maxpool_backward_f32(y.data(), r.data(), dq.data(), oh, ow, got.data());
        ASSERT_EQ(0, std::memcmp(want.data(), got.data(), (plane + 16) * sizeof(float)))
            << isa_name(isa) << " oh=" << oh << " ow=" << ow;
        // Without y (max pooling alone, Pool2d::backward): r itself, with NaN and -0, and no gate.
        relu_maxpool_backward_f32_ref(nullptr, y.data(), dq.data(), oh, ow, want.data());
        t->relu_maxpool_backward_f32(nullptr, y.data(), dq.data(), oh, ow, got.data());
        ASSERT_EQ(0, std::memcmp(want.data(), got.data(), (plane + 16) * sizeof(float)))
            << isa_name(isa) << " no ReLU, oh=" << oh << " ow=" << ow;
      }
  }
}

// Training's pair (q and winning positions, then dy from them) against the pair that keeps y and
// r, bit for bit, and every ISA against the reference: NaN, -0, ties, all-negative windows, odd
// sizes, rows wider than one 32-column step, a row stride beyond ow; nothing past a plane written.
TEST(ReluMaxpoolWin, EveryIsaMatchesThePairThatKeepsYAndR) {
  Rng rng(49);
  const float kGuard = 12345.0f;
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t) continue;
    for (int oh = 1; oh <= 7; ++oh)
      for (int ow = 1; ow <= 70; ow += ow < 34 ? 1 : 9) {
        const int64_t ldc = ow + static_cast<int>(rng.below(5));
        std::vector<float> c(size_t(oh) * size_t(ldc));
        for (float& v : c) {
          const uint64_t kind = rng.below(12);
          v = kind == 0 ? std::nanf("") : kind == 1 ? -0.0f : kind == 2 ? 0.5f : kind < 5 ? -1.0f : rng.uniform(-2, 2);
        }
        const float bias = rng.below(3) == 0 ? 0.0f : rng.uniform(-0.5f, 0.5f);
        const size_t plane = size_t(oh) * size_t(ow), pooled = size_t(oh / 2) * size_t(ow / 2);
        std::vector<float> y(plane), r(plane), q_want(pooled + 16, kGuard), q(pooled + 16, kGuard);
        std::vector<uint8_t> win(pooled + 16, 99);
        bias_relu_maxpool_f32_ref(c.data(), ldc, oh, ow, bias, y.data(), r.data(), q_want.data(), false);
        t->bias_relu_maxpool_win_f32(c.data(), ldc, oh, ow, bias, q.data(), win.data());
        const std::string where = std::string(isa_name(isa)) + " oh=" + std::to_string(oh) + " ow=" + std::to_string(ow);
        ASSERT_EQ(0, std::memcmp(q.data(), q_want.data(), q.size() * sizeof(float))) << where;
        for (size_t i = pooled; i < win.size(); ++i) ASSERT_EQ(win[i], 99) << where << " win written at " << i;
        std::vector<float> dq(pooled + 1);
        for (float& v : dq) v = rng.below(6) == 0 ? -0.0f : rng.uniform(-1, 1);
        std::vector<float> dy_want(plane + 16, kGuard), dy(plane + 16, kGuard);
        relu_maxpool_backward_f32_ref(y.data(), r.data(), dq.data(), oh, ow, dy_want.data());
        t->relu_maxpool_backward_win_f32(win.data(), dq.data(), oh, ow, dy.data());
        ASSERT_EQ(0, std::memcmp(dy.data(), dy_want.data(), dy.size() * sizeof(float))) << where;
      }
  }
}

// col2im of every ISA against the reference, bit for bit (the same addition order per element):
// strides 1 and 2, padding, kernels 1..5, rows up to 70 wide (past the SIMD kernel's 64), and
// a row stride ld larger than the columns used.
TEST(Col2im, EveryIsaMatchesReference) {
  Rng rng(48);
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t) continue;
    for (int k = 1; k <= 5; ++k)
      for (int stride : {1, 2})
        for (int pad = 0; pad <= 2; ++pad)
          for (int hw : {5, 10, 14, 17, 33, 64, 70}) {
            if (hw + 2 * pad < k) continue;
            const int c = 1 + static_cast<int>(rng.below(3)), imgs = 1 + static_cast<int>(rng.below(3));
            const int h = hw, w = hw - static_cast<int>(rng.below(3)) > 0 ? hw - static_cast<int>(rng.below(3)) : hw;
            if (w + 2 * pad < k) continue;
            const int oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1;
            const int64_t ld = int64_t{imgs} * oh * ow + static_cast<int>(rng.below(5));
            std::vector<float> col(size_t(c) * k * k * size_t(ld));
            for (float& v : col) v = rng.uniform(-1, 1);
            std::vector<float> want(size_t(imgs) * c * h * w + 16);
            for (float& v : want) v = rng.uniform(-1, 1);
            std::vector<float> got = want;
            col2im_f32_ref({col.data(), ld, imgs, c, h, w, k, stride, pad, oh, ow, want.data()});
            t->col2im_f32({col.data(), ld, imgs, c, h, w, k, stride, pad, oh, ow, got.data()});
            ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
                << isa_name(isa) << " k=" << k << " stride=" << stride << " pad=" << pad << " h=" << h << " w=" << w;
          }
  }
}

TEST(Sgemm, ZeroKClearsOrKeeps) {
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t) continue;
    std::vector<float> c(6, 3.0f);
    t->sgemm({2, 3, 0, nullptr, 0, 0, nullptr, 0, 0, c.data(), 3, true});
    EXPECT_EQ(c[0], 3.0f) << isa_name(isa);
    t->sgemm({2, 3, 0, nullptr, 0, 0, nullptr, 0, 0, c.data(), 3, false});
    EXPECT_EQ(c[5], 0.0f) << isa_name(isa);
  }
}

}  // namespace
}  // namespace lowbit
