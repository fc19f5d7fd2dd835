// The lane-layout convolutions (ConvLanesArgs): the reference against direct loops over NCHW
// images in double, every ISA's kernels against the reference (tolerance growing with the sum
// length), and the layout changes bit for bit, with guards around what they may write. Also the
// 5x5 weight gradient on NCHW images (ConvDwArgs).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/sgemm.h"
#include "lowbit/core.h"

namespace lowbit {
namespace {

struct Shape5 {
  int c, h, w, oc;
  int oh() const { return h - 4; }
  int ow() const { return w - 4; }
};

std::vector<float> random_vec(Rng& rng, size_t n) {
  std::vector<float> v(n);
  for (float& x : v) x = rng.uniform(-1, 1);
  return v;
}

// The kernels' whole-lane inputs for n images: x and dy in NCHW, turned into lanes by the reference.
struct Case {
  Shape5 s;
  int n;
  std::vector<float> wt, x, dy, xl, yl;
  Case(Shape5 sh, int imgs, Rng& rng) : s(sh), n(imgs) {
    wt = random_vec(rng, size_t(s.oc) * s.c * 25);
    x = random_vec(rng, size_t(n) * s.c * s.h * s.w);
    dy = random_vec(rng, size_t(n) * s.oc * s.oh() * s.ow());
    xl.resize(size_t(s.c) * s.h * s.w * kLanes);
    yl.resize(size_t(s.oc) * s.oh() * s.ow() * kLanes);
    to_lanes_f32_ref(x.data(), int64_t{s.c} * s.h * s.w, n, int64_t{s.c} * s.h * s.w, xl.data());
    to_lanes_f32_ref(dy.data(), int64_t{s.oc} * s.oh() * s.ow(), n, int64_t{s.oc} * s.oh() * s.ow(), yl.data());
  }
  ConvLanesArgs args(float* xs, float* ys, float* dw) const { return {s.c, s.h, s.w, s.oc, 5, wt.data(), xs, ys, dw}; }
  double w(int o, int c, int ky, int kx) const { return wt[((size_t(o) * s.c + c) * 5 + ky) * 5 + kx]; }
  double xv(int b, int c, int y, int x_) const { return x[((size_t(b) * s.c + c) * s.h + y) * s.w + x_]; }
  double dyv(int b, int o, int y, int x_) const { return dy[((size_t(b) * s.oc + o) * s.oh() + y) * s.ow() + x_]; }
};

TEST(ConvLanes, ReferenceEqualsDirectLoops) {
  Rng rng(90);
  for (Shape5 sh : {Shape5{6, 14, 14, 16}, Shape5{2, 7, 9, 3}, Shape5{1, 5, 5, 1}}) {
    for (int n : {1, 5, 16}) {
      Case k(sh, n, rng);
      const Shape5 s = sh;
      SCOPED_TRACE(testing::Message() << "c=" << s.c << " h=" << s.h << " w=" << s.w << " oc=" << s.oc << " n=" << n);
      std::vector<float> y(k.yl.size(), 7.0f), dw(size_t(s.oc) * s.c * 25, 0.5f), dx(k.xl.size(), 7.0f);
      conv_lanes_fwd_ref(k.args(k.xl.data(), y.data(), nullptr));
      conv_lanes_dw_ref(k.args(k.xl.data(), k.yl.data(), dw.data()));
      conv_lanes_dx_ref(k.args(dx.data(), k.yl.data(), nullptr));
      const double tol = 1e-5 * std::sqrt(double(s.c * 25 + s.oc * 25 + n * s.oh() * s.ow()));
      for (int l = 0; l < kLanes; ++l)
        for (int o = 0; o < s.oc; ++o)
          for (int oy = 0; oy < s.oh(); ++oy)
            for (int ox = 0; ox < s.ow(); ++ox) {
              double want = 0;
              for (int c = 0; l < n && c < s.c; ++c)
                for (int ky = 0; ky < 5; ++ky)
                  for (int kx = 0; kx < 5; ++kx) want += k.w(o, c, ky, kx) * k.xv(l, c, oy + ky, ox + kx);
              ASSERT_NEAR(y[((size_t(o) * s.oh() + oy) * s.ow() + ox) * kLanes + l], want, tol);
            }
      for (int o = 0; o < s.oc; ++o)
        for (int c = 0; c < s.c; ++c)
          for (int ky = 0; ky < 5; ++ky)
            for (int kx = 0; kx < 5; ++kx) {
              double want = 0.5;
              for (int b = 0; b < n; ++b)
                for (int oy = 0; oy < s.oh(); ++oy)
                  for (int ox = 0; ox < s.ow(); ++ox) want += k.dyv(b, o, oy, ox) * k.xv(b, c, oy + ky, ox + kx);
              ASSERT_NEAR(dw[((size_t(o) * s.c + c) * 5 + ky) * 5 + kx], want, tol);
            }
      for (int l = 0; l < kLanes; ++l)
        for (int c = 0; c < s.c; ++c)
          for (int iy = 0; iy < s.h; ++iy)
            for (int ix = 0; ix < s.w; ++ix) {
              double want = 0;
              for (int o = 0; l < n && o < s.oc; ++o)
                for (int ky = 0; ky < 5; ++ky)
                  for (int kx = 0; kx < 5; ++kx) {
                    const int oy = iy - ky, ox = ix - kx;
                    if (oy >= 0 && oy < s.oh() && ox >= 0 && ox < s.ow()) want += k.w(o, c, ky, kx) * k.dyv(l, o, oy, ox);
                  }
              ASSERT_NEAR(dx[((size_t(c) * s.h + iy) * s.w + ix) * kLanes + l], want, tol);
            }
    }
  }
}

TEST(ConvLanes, FitsOnlyFiveByFive) {
  EXPECT_TRUE(conv_lanes_fits(6, 14, 14, 16, 5));
  EXPECT_TRUE(conv_lanes_fits(1, 5, 16, 1, 5));    // ow = 12
  EXPECT_TRUE(conv_lanes_fits(1, 32, 32, 6, 5));   // LeNet's conv1: ow = 28, in strips
  EXPECT_FALSE(conv_lanes_fits(6, 14, 14, 16, 3));
  EXPECT_FALSE(conv_lanes_fits(6, 4, 14, 16, 5));
}

// Every output row width 1..12, channel counts around the kernels' blocks of 2 and 4, partial and
// full lane groups; dw accumulates onto what is there.
TEST(ConvLanes, EveryIsaMatchesReference) {
  Rng rng(91);
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t || !t->conv_lanes_fwd) continue;
    // Rows up to 12 wide in one strip, wider ones in strips (LeNet's conv1: 28); 6 channels take
    // dW blocks of 3.
    for (int ow : {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 17, 25, 28, 31})
      for (int oc : {1, 2, 3, 5, 6, 16})
        for (int c : {1, 3, 6}) {
          const Shape5 s{c, 5 + static_cast<int>(rng.below(10)), ow + 4, oc};
          const int n = ow % 3 == 0 ? kLanes : 1 + static_cast<int>(rng.below(kLanes));
          Case k(s, n, rng);
          SCOPED_TRACE(testing::Message() << isa_name(isa) << " c=" << c << " h=" << s.h << " w=" << s.w << " oc=" << oc);
          std::vector<float> y0(k.yl.size()), y1(k.yl.size()), dx0(k.xl.size()), dx1(k.xl.size());
          std::vector<float> dw0 = random_vec(rng, size_t(oc) * c * 25), dw1 = dw0;
          conv_lanes_fwd_ref(k.args(k.xl.data(), y0.data(), nullptr));
          t->conv_lanes_fwd(k.args(k.xl.data(), y1.data(), nullptr));
          conv_lanes_dw_ref(k.args(k.xl.data(), k.yl.data(), dw0.data()));
          t->conv_lanes_dw(k.args(k.xl.data(), k.yl.data(), dw1.data()));
          conv_lanes_dx_ref(k.args(dx0.data(), k.yl.data(), nullptr));
          t->conv_lanes_dx(k.args(dx1.data(), k.yl.data(), nullptr));
          for (size_t i = 0; i < y0.size(); ++i) ASSERT_NEAR(y0[i], y1[i], 1e-5 * std::sqrt(c * 25.0)) << "fwd " << i;
          const double dw_tol = 1e-5 * std::sqrt(double(s.oh() * s.ow() * kLanes));
          for (size_t i = 0; i < dw0.size(); ++i) ASSERT_NEAR(dw0[i], dw1[i], dw_tol) << "dw " << i;
          for (size_t i = 0; i < dx0.size(); ++i) ASSERT_NEAR(dx0[i], dx1[i], 1e-5 * std::sqrt(oc * 25.0)) << "dx " << i;
        }
  }
}

// Into lanes and back, bit for bit: counts around the 16-float blocks, every image count, a row
// stride beyond count; nothing outside the images' [0, count) ranges is written.
TEST(ConvLanes, LayoutChangesEveryIsaMatchReference) {
  Rng rng(92);
  const float kGuard = 12345.0f;
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t || !t->to_lanes_f32) continue;
    for (int64_t count : {1, 15, 16, 17, 100, 1176})
      for (int n = 1; n <= kLanes; ++n) {
        const int64_t stride = count + static_cast<int64_t>(rng.below(20));
        std::vector<float> src = random_vec(rng, size_t(n) * size_t(stride));
        std::vector<float> want(size_t(count) * kLanes, kGuard), got = want;
        to_lanes_f32_ref(src.data(), stride, n, count, want.data());
        t->to_lanes_f32(src.data(), stride, n, count, got.data());
        ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float))) << "to, count=" << count << " n=" << n;
        std::vector<float> back0(size_t(kLanes) * size_t(stride), kGuard), back1 = back0;
        from_lanes_f32_ref(want.data(), count, n, back0.data(), stride);
        t->from_lanes_f32(want.data(), count, n, back1.data(), stride);
        ASSERT_EQ(0, std::memcmp(back0.data(), back1.data(), back0.size() * sizeof(float))) << "from, count=" << count << " n=" << n;
        for (int i = 0; i < n; ++i)
          for (int64_t j = 0; j < stride; ++j)
            ASSERT_EQ(back0[size_t(i * stride + j)], j < count ? src[size_t(i * stride + j)] : kGuard);
      }
  }
}

// Training's ReLU -> max pool pair in lanes (ReluMaxpoolLanesWinFn): lane by lane the plane
// kernels' bits (their references), and every ISA the lane reference's bits, on values with
// ties, zeros of both signs, negatives and NaN; odd sizes (a last row or column outside every
// window), partial lane groups, with and without bias; window codes written for n lanes only.
TEST(ReluMaxpoolLanesWin, MatchesThePlaneKernelsPerLaneOnEveryIsa) {
  Rng rng(93);
  const uint8_t kGuard = 0xAB;
  struct Dims { int oc, oh, ow; };
  for (Dims d : {Dims{16, 10, 10}, Dims{3, 5, 7}, Dims{2, 2, 2}, Dims{4, 8, 12}, Dims{1, 3, 3}})
    for (int n : {1, 8, 13, 16})
      for (bool with_bias : {false, true}) {
        SCOPED_TRACE("oc=" + std::to_string(d.oc) + " oh=" + std::to_string(d.oh) + " ow=" + std::to_string(d.ow) +
                     " n=" + std::to_string(n) + " bias=" + std::to_string(with_bias));
        const int ph = d.oh / 2, pw = d.ow / 2;
        const size_t plane = size_t(d.oh) * d.ow, pooled = size_t(ph) * pw, ysize = d.oc * plane, qsize = d.oc * pooled;
        std::vector<float> y(ysize * kLanes), bias(size_t(d.oc)), dq(qsize * kLanes);
        const float pick[] = {-1.0f, -0.0f, 0.0f, 0.25f, 0.5f, std::nanf("")};
        for (float& v : y) v = rng.below(3) == 0 ? pick[rng.below(6)] : rng.uniform(-1, 1);
        for (float& v : bias) v = rng.uniform(-0.3f, 0.3f);
        for (float& v : dq) v = rng.below(5) == 0 ? -0.0f : rng.uniform(-1, 1);
        const float* b = with_bias ? bias.data() : nullptr;
        std::vector<float> q(qsize * kLanes), dy(ysize * kLanes);
        std::vector<uint8_t> win(qsize * n + 16, kGuard);
        relu_maxpool_lanes_win_f32_ref(y.data(), d.oc, d.oh, d.ow, b, n, q.data(), win.data());
        relu_maxpool_backward_lanes_win_f32_ref(win.data(), dq.data(), d.oc, d.oh, d.ow, n, dy.data());
        for (size_t i = qsize * n; i < win.size(); ++i) ASSERT_EQ(win[i], kGuard);
        // Lane l against the plane kernels on image l's planes.
        for (int l = 0; l < n; ++l)
          for (int o = 0; o < d.oc; ++o) {
            std::vector<float> c(plane), pq(pooled), pdq(pooled), pdy(plane);
            std::vector<uint8_t> pwin(pooled);
            for (size_t p = 0; p < plane; ++p) c[p] = y[(o * plane + p) * kLanes + size_t(l)];
            for (size_t p = 0; p < pooled; ++p) pdq[p] = dq[(o * pooled + p) * kLanes + size_t(l)];
            bias_relu_maxpool_win_f32_ref(c.data(), d.ow, d.oh, d.ow, with_bias ? bias[size_t(o)] : 0.0f, pq.data(), pwin.data());
            relu_maxpool_backward_win_f32_ref(pwin.data(), pdq.data(), d.oh, d.ow, pdy.data());
            for (size_t p = 0; p < pooled; ++p) {
              ASSERT_EQ(0, std::memcmp(&pq[p], &q[(o * pooled + p) * kLanes + size_t(l)], sizeof(float))) << "q " << p;
              ASSERT_EQ(pwin[p], win[(o * pooled + p) * size_t(n) + size_t(l)]) << "win " << p;
            }
            for (size_t p = 0; p < plane; ++p)
              ASSERT_EQ(0, std::memcmp(&pdy[p], &dy[(o * plane + p) * kLanes + size_t(l)], sizeof(float))) << "dy " << p;
          }
        for (size_t i = 0; i < ysize; ++i)
          for (int l = n; l < kLanes; ++l) ASSERT_EQ(dy[i * kLanes + size_t(l)], 0.0f);
        for (Isa isa : {Isa::avx2, Isa::avx512}) {
          const KernelTable* t = kernels_for(isa);
          if (!t || !t->relu_maxpool_lanes_win_f32) continue;
          std::vector<float> q2(q.size()), dy2(dy.size(), 7.0f);
          std::vector<uint8_t> win2(win.size(), kGuard);
          t->relu_maxpool_lanes_win_f32(y.data(), d.oc, d.oh, d.ow, b, n, q2.data(), win2.data());
          t->relu_maxpool_backward_lanes_win_f32(win2.data(), dq.data(), d.oc, d.oh, d.ow, n, dy2.data());
          ASSERT_EQ(0, std::memcmp(q.data(), q2.data(), q.size() * sizeof(float))) << isa_name(isa);
          ASSERT_EQ(win, win2) << isa_name(isa);
          ASSERT_EQ(0, std::memcmp(dy.data(), dy2.data(), dy.size() * sizeof(float))) << isa_name(isa);
        }
      }
}

// The 5x5 weight gradient on NCHW images: the reference against direct loops in double, every
// ISA against the reference; row widths around the 16-column groups, channel counts around the
// blocks of 4, image strides beyond the image, accumulation onto what is there.
TEST(Conv5Dw, EveryIsaMatchesReferenceAndDirectLoops) {
  Rng rng(93);
  for (int w : {5, 6, 14, 20, 21, 32, 37})
    for (int oc : {1, 2, 3, 6, 16})
      for (int c : {1, 2, 6}) {
        const int h = 5 + static_cast<int>(rng.below(6)), oh = h - 4, ow = w - 4, n = 1 + static_cast<int>(rng.below(4));
        const int64_t xs = int64_t{c} * h * w + static_cast<int>(rng.below(3)), ys = int64_t{oc} * oh * ow + 1;
        std::vector<float> x = random_vec(rng, size_t(n * xs)), dy = random_vec(rng, size_t(n * ys));
        std::vector<float> want = random_vec(rng, size_t(oc) * c * 25), start = want;
        conv5_dw_f32_ref({n, c, h, w, oc, x.data(), xs, dy.data(), ys, want.data()});
        SCOPED_TRACE(testing::Message() << "c=" << c << " h=" << h << " w=" << w << " oc=" << oc << " n=" << n);
        const double tol = 1e-5 * std::sqrt(double(n * oh * ow)) + 1e-6;
        for (int o = 0; o < oc; ++o)
          for (int ci = 0; ci < c; ++ci)
            for (int t = 0; t < 25; ++t) {
              const size_t j = (size_t(o) * c + ci) * 25 + t;
              double s = start[j];
              for (int b = 0; b < n; ++b)
                for (int oy = 0; oy < oh; ++oy)
                  for (int ox = 0; ox < ow; ++ox)
                    s += double{dy[size_t(b * ys + (o * oh + oy) * ow + ox)]} *
                         x[size_t(b * xs + (ci * h + oy + t / 5) * w + ox + t % 5)];
              ASSERT_NEAR(want[j], s, tol) << "reference, index " << j;
            }
        for (Isa isa : {Isa::avx2, Isa::avx512}) {
          const KernelTable* tab = kernels_for(isa);
          if (!tab || !tab->conv5_dw_f32) continue;
          std::vector<float> got = start;
          tab->conv5_dw_f32({n, c, h, w, oc, x.data(), xs, dy.data(), ys, got.data()});
          for (size_t j = 0; j < got.size(); ++j) ASSERT_NEAR(got[j], want[j], tol) << isa_name(isa) << " index " << j;
        }
      }
}

}  // namespace
}  // namespace lowbit
