// The integer convolution pieces: im2col into the packed layout (reference against a direct
// convolution; every ISA byte-equal to the reference), the plain-matrix pack, pooling (against
// independent oracles; SIMD equal to the reference), input quantization, and the weight / bias
// preparation helpers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/qkernels.h"
#include "lowbit/core.h"

namespace lowbit {
namespace {

std::vector<uint8_t> random_bytes(Rng& rng, size_t n) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng.below(256));
  return v;
}

struct ConvShape {
  int nb, c, h, w, kh, kw, stride, pad;
  bool cnhw;  // planes stored channel-major (C, N, H, W) instead of NCHW
  std::string str() const {
    std::ostringstream s;
    s << "nb=" << nb << " c=" << c << " h=" << h << " w=" << w << " k=" << kh << "x" << kw << " stride=" << stride
      << " pad=" << pad << (cnhw ? " CNHW" : " NCHW");
    return s.str();
  }
  QIm2colArgs args(const uint8_t* in, uint8_t pad_value, uint8_t* out) const {
    QIm2colArgs a;
    a.in = in;
    a.nb = nb;
    a.c = c;
    a.h = h;
    a.w = w;
    a.in_bstride = cnhw ? int64_t{h} * w : int64_t{c} * h * w;
    a.in_cstride = cnhw ? int64_t{nb} * h * w : int64_t{h} * w;
    a.kh = kh;
    a.kw = kw;
    a.stride = stride;
    a.pad = pad;
    a.pad_value = pad_value;
    a.out = out;
    return a;
  }
  int oh() const { return qconv_out_size(h, kh, stride, pad); }
  int ow() const { return qconv_out_size(w, kw, stride, pad); }
  size_t packed_size() const { return static_cast<size_t>(qk4(c * kh * kw)) * nb * oh() * ow(); }
};

std::vector<ConvShape> conv_shapes() {
  std::vector<ConvShape> out;
  int i = 0;
  for (int kk = 1; kk <= 5; ++kk)
    for (int stride = 1; stride <= 2; ++stride)
      for (int pad = 0; pad <= 2; ++pad)
        for (int c : {1, 2, 3, 6})
          for (int hw : {5, 7, 14, 17, 32, 40}) {
            if (hw + 2 * pad < kk) continue;
            const int nb = (i % 3 == 0) ? 3 : 1;
            const int kw = (i % 5 == 0 && kk > 1) ? kk - 1 : kk;  // some non-square kernels
            out.push_back({nb, c, hw, hw + (i % 4 == 0 ? 3 : 0), kk, kw, stride, pad, i % 2 == 1});
            ++i;
          }
  out.push_back({2, 1, 32, 32, 5, 5, 1, 0, false});   // LeNet conv1
  out.push_back({3, 6, 14, 14, 5, 5, 1, 0, false});   // LeNet conv2
  out.push_back({5, 16, 5, 5, 5, 5, 1, 0, false});    // LeNet conv3
  out.push_back({1, 16, 28, 28, 3, 3, 1, 1, true});
  return out;
}

// im2col (ref) + GEMM (ref, int32 out) against a direct convolution with padding value z.
TEST(QIm2col, ReferenceGivesDirectConvolution) {
  Rng rng(21);
  for (const ConvShape& s : conv_shapes()) {
    if (s.h > 17) continue;  // the direct loop is slow; small images cover the padding logic
    const int m = 3, k = s.c * s.kh * s.kw, k4 = qk4(k);
    const auto in = random_bytes(rng, static_cast<size_t>(s.nb) * s.c * s.h * s.w);
    const uint8_t z = static_cast<uint8_t>(rng.below(256));
    std::vector<int8_t> w(static_cast<size_t>(m) * k4, 0);
    for (int i = 0; i < m; ++i)
      for (int p = 0; p < k; ++p) w[static_cast<size_t>(i * k4 + p)] = static_cast<int8_t>(static_cast<int>(rng.below(256)) - 128);
    std::vector<uint8_t> packed(s.packed_size(), 0x77);
    qim2col_u8_ref(s.args(in.data(), z, packed.data()));
    const int n = s.nb * s.oh() * s.ow();
    std::vector<int32_t> bias(m, 0), c(static_cast<size_t>(m) * n);
    QGemmArgs g;
    g.m = m;
    g.n = n;
    g.k = k;
    g.w = w.data();
    g.ldw = k4;
    g.x = packed.data();
    g.bias = bias.data();
    g.ldc = n;
    g.c_i32 = c.data();
    qgemm_u8s8_ref(g);
    const QIm2colArgs a = s.args(in.data(), z, nullptr);
    for (int i = 0; i < m; ++i)
      for (int b = 0; b < s.nb; ++b)
        for (int y = 0; y < s.oh(); ++y)
          for (int x = 0; x < s.ow(); ++x) {
            int64_t sum = 0;
            for (int ci = 0; ci < s.c; ++ci)
              for (int u = 0; u < s.kh; ++u)
                for (int v = 0; v < s.kw; ++v) {
                  const int r = y * s.stride - s.pad + u, q = x * s.stride - s.pad + v;
                  const int val = (r < 0 || r >= s.h || q < 0 || q >= s.w)
                                      ? z
                                      : in[static_cast<size_t>(b * a.in_bstride + ci * a.in_cstride + r * s.w + q)];
                  sum += int64_t{w[static_cast<size_t>(i * k4 + (ci * s.kh + u) * s.kw + v)]} * val;
                }
            const int col = (b * s.oh() + y) * s.ow() + x;
            ASSERT_EQ(c[static_cast<size_t>(i * n + col)], sum)
                << s.str() << " out channel " << i << " image " << b << " y " << y << " x " << x;
          }
    // Padded rows k >= K are zero.
    for (int p = k; p < k4; ++p)
      for (int j = 0; j < n; ++j) ASSERT_EQ(packed[static_cast<size_t>((p / 4) * n * 4 + j * 4 + p % 4)], 0) << s.str();
  }
}

TEST(QIm2col, EveryIsaMatchesReference) {
  Rng rng(22);
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t) continue;
    for (const ConvShape& s : conv_shapes()) {
      const auto in = random_bytes(rng, static_cast<size_t>(s.nb) * s.c * s.h * s.w);
      const uint8_t z = static_cast<uint8_t>(rng.below(256));
      // One guard byte after the packed matrix, pre-filled the same way in both.
      std::vector<uint8_t> want(s.packed_size() + 64, 0x3C), got = want;
      qim2col_u8_ref(s.args(in.data(), z, want.data()));
      t->qim2col_u8(s.args(in.data(), z, got.data()));
      for (size_t i = 0; i < want.size(); ++i)
        ASSERT_EQ(int{got[i]}, int{want[i]}) << isa_name(isa) << " " << s.str() << " packed byte " << i;
    }
  }
}

TEST(QPack, PlainMatrixBothOrders) {
  Rng rng(23);
  for (int k : {1, 3, 4, 5, 84, 120, 401})
    for (int n : {1, 7, 256}) {
      const auto a = random_bytes(rng, static_cast<size_t>(k) * n);
      std::vector<uint8_t> p1(static_cast<size_t>(qk4(k)) * n, 0x11), p2 = p1;
      qpack_u8_ref(a.data(), n, 1, k, n, p1.data());  // X[K][N]
      std::vector<uint8_t> t(a.size());               // the same matrix batch-major: [N][K]
      for (int p = 0; p < k; ++p)
        for (int j = 0; j < n; ++j) t[static_cast<size_t>(j * k + p)] = a[static_cast<size_t>(p * n + j)];
      qpack_u8_ref(t.data(), 1, k, k, n, p2.data());
      ASSERT_EQ(p1, p2) << "k=" << k << " n=" << n;
      for (int p = 0; p < qk4(k); ++p)
        for (int j = 0; j < n; ++j)
          ASSERT_EQ(p1[static_cast<size_t>((p / 4) * n * 4 + j * 4 + p % 4)], p < k ? a[static_cast<size_t>(p * n + j)] : 0)
              << "k=" << k << " n=" << n << " p=" << p << " j=" << j;
    }
}

TEST(QPack, EveryIsaMatchesReference) {
  Rng rng(28);
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t) continue;
    for (int k : {1, 3, 4, 5, 84, 120, 400, 401})
      for (int n : {1, 7, 15, 16, 17, 256, 257})
        for (int mode = 0; mode < 4; ++mode) {
          // row-major [K][N], batch-major [N][K], batch-major with padded rows, general strides
          const int64_t rs = mode == 0 ? n : (mode == 3 ? 2 * n + 1 : 1);
          const int64_t cs = mode == 0 ? 1 : (mode == 1 ? k : (mode == 2 ? k + 3 : 2));
          const auto x = random_bytes(rng, static_cast<size_t>((k - 1) * rs + (n - 1) * cs + 1));
          std::vector<uint8_t> want(static_cast<size_t>(qk4(k)) * n + 32, 0x5D), got = want;
          qpack_u8_ref(x.data(), rs, cs, k, n, want.data());
          t->qpack_u8(x.data(), rs, cs, k, n, got.data());
          ASSERT_EQ(want, got) << isa_name(isa) << " k=" << k << " n=" << n << " rs=" << rs << " cs=" << cs;
        }
  }
}

TEST(QPool, MaxAndAverageMatchOracles) {
  Rng rng(24);
  for (int planes : {1, 6, 16})
    for (int h : {2, 3, 10, 28})
      for (int w : {2, 5, 10, 28, 40, 66}) {
        const auto in = random_bytes(rng, static_cast<size_t>(planes) * h * w);
        const int oh = h / 2, ow = w / 2;
        std::vector<uint8_t> mx(static_cast<size_t>(planes) * oh * ow), av(mx.size());
        qmaxpool2x2_u8_ref(in.data(), planes, h, w, mx.data());
        qavgpool2x2_u8_ref(in.data(), planes, h, w, av.data());
        for (int p = 0; p < planes; ++p)
          for (int y = 0; y < oh; ++y)
            for (int x = 0; x < ow; ++x) {
              int m = 0;
              double s = 0;
              for (int dy = 0; dy < 2; ++dy)
                for (int dx = 0; dx < 2; ++dx) {
                  const int u = in[static_cast<size_t>((p * h + 2 * y + dy) * w + 2 * x + dx)];
                  m = std::max(m, u);
                  s += u - 128;  // q domain
                }
              const double avg = s / 4;
              const int want_avg = 128 + static_cast<int>(avg >= 0 ? std::floor(avg + 0.5) : -std::floor(-avg + 0.5));
              const size_t o = static_cast<size_t>((p * oh + y) * ow + x);
              ASSERT_EQ(int{mx[o]}, m) << "planes " << planes << " h " << h << " w " << w << " at " << o;
              ASSERT_EQ(int{av[o]}, want_avg) << "planes " << planes << " h " << h << " w " << w << " at " << o;
            }
      }
  // Hand-worked ties of the average in the q domain: q = {-1, -1, 0, 0} sums to -2, -0.5 -> -1;
  // q = {1, 1, 0, 0} -> 0.5 -> 1.
  const uint8_t neg[4] = {127, 127, 128, 128}, pos[4] = {129, 129, 128, 128};
  uint8_t o = 0;
  qavgpool2x2_u8_ref(neg, 1, 2, 2, &o);
  EXPECT_EQ(o, 127);
  qavgpool2x2_u8_ref(pos, 1, 2, 2, &o);
  EXPECT_EQ(o, 129);
}

TEST(QPool, EveryIsaMatchesReference) {
  Rng rng(25);
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t) continue;
    for (int planes : {1, 2, 6, 16, 33})
      for (int h : {1, 2, 3, 4, 10, 28, 31})
        for (int w : {1, 2, 3, 4, 10, 14, 28, 30, 32, 34, 62, 64, 66, 100}) {
          const auto in = random_bytes(rng, static_cast<size_t>(planes) * h * w);
          const size_t n_out = static_cast<size_t>(planes) * (h / 2) * (w / 2);
          std::vector<uint8_t> want(n_out + 32, 0x42), got = want;
          qmaxpool2x2_u8_ref(in.data(), planes, h, w, want.data());
          t->qmaxpool2x2_u8(in.data(), planes, h, w, got.data());
          ASSERT_EQ(want, got) << isa_name(isa) << " planes " << planes << " h " << h << " w " << w;
          t->qavgpool2x2_u8(in.data(), planes, h, w, got.data());
          qavgpool2x2_u8_ref(in.data(), planes, h, w, want.data());
          ASSERT_EQ(want, got) << isa_name(isa) << " avg planes " << planes << " h " << h << " w " << w;
        }
  }
}

// Requantization parameters for c channels: multipliers from 1e-6 to 40 (left and right shifts),
// a random output zero point and clamp (sometimes a fused ReLU).
struct ChannelRequant {
  std::vector<int32_t> q31, shift, divisor;
  std::vector<float> scale;
  RequantParams rq;
  ChannelRequant(Rng& rng, int c) {
    for (int i = 0; i < c; ++i) {
      const double m = std::exp(std::log(1e-6) + (std::log(40.0) - std::log(1e-6)) * rng.uniform());
      const QuantizedMultiplier qm = quantize_multiplier(m);
      q31.push_back(qm.q31);
      shift.push_back(qm.shift);
      scale.push_back(static_cast<float>(m));
      divisor.push_back(m > 2.0 ? 1 : divisor_for_multiplier(m));
    }
    rq.q31 = q31.data(), rq.shift = shift.data(), rq.scale = scale.data(), rq.divisor = divisor.data();
    rq.z_out = static_cast<int32_t>(rng.below(256));
    rq.lo = rng.below(2) ? rq.z_out : static_cast<int32_t>(rng.below(64));
    rq.hi = std::max(rq.lo, 255 - static_cast<int32_t>(rng.below(64)));
  }
};

const RequantVariant kAllVariants[] = {RequantVariant::fixedpoint,    RequantVariant::fixedpoint_floor,
                                       RequantVariant::float_nearest, RequantVariant::float_floor,
                                       RequantVariant::divide_nearest, RequantVariant::divide_floor};

// Pooling the int32 accumulators and then requantizing gives the bytes of requantizing and then
// pooling (what the engine did before): requantization is non-decreasing for every variant.
TEST(QPoolRequant, ReferenceEqualsRequantThenPool) {
  Rng rng(21);
  for (RequantVariant v : kAllVariants)
    for (int it = 0; it < 20; ++it) {
      const int nb = 1 + static_cast<int>(rng.below(3)), c = 1 + static_cast<int>(rng.below(5));
      const int h = 1 + static_cast<int>(rng.below(9)), w = 1 + static_cast<int>(rng.below(9));
      ChannelRequant cr(rng, c);
      std::vector<int32_t> acc(size_t(nb) * c * h * w);
      for (auto& x : acc)
        x = rng.below(10) == 0 ? (rng.below(2) ? INT32_MAX : INT32_MIN) : static_cast<int32_t>(rng.below(1u << 24)) - (1 << 23);
      std::vector<uint8_t> each(acc.size()), want(size_t(nb) * c * (h / 2) * (w / 2)), got(want.size());
      for (size_t i = 0; i < acc.size(); ++i)
        each[i] = requantize_ref(acc[i], cr.rq, v, static_cast<int>((i / (size_t(h) * w)) % size_t(c)));
      qmaxpool2x2_u8_ref(each.data(), int64_t{nb} * c, h, w, want.data());
      qmaxpool2x2_requant_i32_ref({acc.data(), nb, c, h, w, &cr.rq, v, got.data()});
      ASSERT_EQ(want, got) << requant_variant_name(v) << " nb=" << nb << " c=" << c << " h=" << h << " w=" << w;
    }
}

// Every ISA's pooled requantization against the reference, bit for bit, with nothing written past
// the output (rows of up to 32 accumulators take the SIMD path; wider ones the reference).
TEST(QPoolRequant, EveryIsaMatchesReference) {
  Rng rng(22);
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t) continue;
    for (RequantVariant v : kAllVariants)
      for (int h : {1, 2, 3, 5, 10, 28})
        for (int w : {1, 2, 3, 10, 17, 28, 32, 33}) {
          const int nb = 1 + static_cast<int>(rng.below(3)), c = 1 + static_cast<int>(rng.below(17));
          ChannelRequant cr(rng, c);
          std::vector<int32_t> acc(size_t(nb) * c * h * w);
          for (auto& x : acc)
            x = rng.below(20) == 0 ? (rng.below(2) ? INT32_MAX : INT32_MIN) : static_cast<int32_t>(rng.below(1u << 22)) - (1 << 21);
          const size_t n = size_t(nb) * c * (h / 2) * (w / 2);
          std::vector<uint8_t> want(n + 64, 0xA5), got(n + 64, 0xA5);
          qmaxpool2x2_requant_i32_ref({acc.data(), nb, c, h, w, &cr.rq, v, want.data()});
          t->qmaxpool2x2_requant_i32({acc.data(), nb, c, h, w, &cr.rq, v, got.data()});
          ASSERT_EQ(want, got) << isa_name(isa) << " " << requant_variant_name(v) << " nb=" << nb << " c=" << c
                               << " h=" << h << " w=" << w;
        }
  }
}

TEST(QQuantize, RoundsHalfToEvenAndClamps) {
  const float x[] = {0.0f, 0.25f, 0.75f, 1.25f, -0.25f, -0.75f, 100.0f, -100.0f, std::nanf(""),
                     std::numeric_limits<float>::infinity(), 0.3f};
  uint8_t out[11];
  QQuantizeArgs p;
  p.scale = 0.5f;  // x / s: 0, 0.5, 1.5, 2.5, -0.5, -1.5, 200, -200, nan, inf, 0.6
  p.z_u = 100;
  p.lo_u = 0;
  p.hi_u = 255;
  qquantize_f32_u8_ref(x, 11, p, out);
  const int want[] = {100, 100, 102, 102, 100, 98, 255, 0, 100, 255, 101};
  for (int i = 0; i < 11; ++i) EXPECT_EQ(int{out[i]}, want[i]) << "x = " << x[i];
  p.lo_u = 90;  // a narrower (e.g. 4-bit) range
  p.hi_u = 105;
  qquantize_f32_u8_ref(x, 11, p, out);
  EXPECT_EQ(out[6], 105);
  EXPECT_EQ(out[7], 90);
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512})
    if (const KernelTable* t = kernels_for(isa)) {
      uint8_t o2[11];
      t->qquantize_f32_u8(x, 11, p, o2);
      for (int i = 0; i < 11; ++i) EXPECT_EQ(o2[i], out[i]) << isa_name(isa) << " i " << i;
    }
}

TEST(QQuantize, EveryIsaMatchesReference) {
  Rng rng(27);
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t) continue;
    for (int n : {1, 7, 8, 9, 31, 1024, 1031}) {
      QQuantizeArgs p;
      p.scale = static_cast<float>(std::exp2(-8.0 + 10.0 * rng.uniform()));
      p.z_u = static_cast<int32_t>(rng.below(256));
      p.lo_u = static_cast<int32_t>(rng.below(100));
      p.hi_u = 155 + static_cast<int32_t>(rng.below(101));
      std::vector<float> x(static_cast<size_t>(n));
      for (float& v : x) {
        const uint64_t kind = rng.below(10);
        if (kind == 0) v = p.scale * (0.5f + static_cast<float>(static_cast<int>(rng.below(60)) - 30));  // ties
        else if (kind == 1) v = std::nanf("");
        else if (kind == 2) v = (rng.below(2) ? 1 : -1) * std::numeric_limits<float>::infinity();
        else v = p.scale * rng.uniform(-300.0f, 300.0f);
      }
      std::vector<uint8_t> want(x.size() + 16, 0x99), got = want;
      qquantize_f32_u8_ref(x.data(), n, p, want.data());
      t->qquantize_f32_u8(x.data(), n, p, got.data());
      for (size_t i = 0; i < want.size(); ++i)
        ASSERT_EQ(int{got[i]}, int{want[i]}) << isa_name(isa) << " n=" << n << " i=" << i << " x=" << (i < x.size() ? x[i] : 0.0f)
                                             << " scale=" << p.scale << " z=" << p.z_u;
    }
  }
}

TEST(QPrep, PadWeightsAndBiasEff) {
  const int8_t w[2 * 5] = {1, -2, 3, -4, 5, -128, 127, 0, 0, 1};
  int8_t padded[2 * 8];
  qpad_weights_s8(w, 2, 5, 5, padded);
  const int8_t want[16] = {1, -2, 3, -4, 5, 0, 0, 0, -128, 127, 0, 0, 1, 0, 0, 0};
  for (int i = 0; i < 16; ++i) EXPECT_EQ(padded[i], want[i]) << i;
  const int32_t bias[2] = {1000, -7};
  int32_t be[2];
  qbias_eff(padded, 2, 5, 8, bias, 130, be, "conv1");
  EXPECT_EQ(be[0], 1000 - 130 * 3);  // sum of row 0 = 3
  EXPECT_EQ(be[1], -7 - 130 * 0);    // sum of row 1 = 0
  qbias_eff(padded, 2, 5, 8, nullptr, 128, be, "conv1");
  EXPECT_EQ(be[0], -384);
  const int32_t huge[2] = {std::numeric_limits<int32_t>::max() - 5, 0};
  try {
    qbias_eff(padded, 2, 5, 8, huge, 0, be, "conv9");
    ADD_FAILURE() << "accepted an overflowing bias";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("conv9"), std::string::npos) << e.what();
  }
}

// Direct conv -> max pool -> requant: shapes with stride 1 around the SIMD kernel's limits (rows
// up to 64 bytes, outputs up to 32 wide, kernels up to 8 wide, padding), 1..17 output channels.
struct ConvPoolCase {
  int nb, c, h, w, kh, kw, pad, m;
  std::string str() const {
    std::ostringstream s;
    s << "nb=" << nb << " c=" << c << " h=" << h << " w=" << w << " k=" << kh << "x" << kw << " pad=" << pad << " m=" << m;
    return s.str();
  }
};

std::vector<ConvPoolCase> conv_pool_cases(Rng& rng) {
  std::vector<ConvPoolCase> out = {{3, 1, 32, 32, 5, 5, 0, 6}, {1, 1, 28, 28, 5, 5, 2, 6}, {2, 3, 36, 36, 5, 5, 0, 16},
                                   {1, 1, 40, 39, 8, 8, 0, 7}, {2, 2, 9, 4, 3, 1, 1, 1},   {1, 1, 3, 3, 2, 2, 0, 17}};
  for (int it = 0; it < 60; ++it) {
    ConvPoolCase s;
    s.nb = 1 + static_cast<int>(rng.below(3));
    s.c = 1 + static_cast<int>(rng.below(3));
    s.kh = 1 + static_cast<int>(rng.below(8));
    s.kw = 1 + static_cast<int>(rng.below(8));
    s.pad = static_cast<int>(rng.below(3));
    s.w = std::max(1, s.kw - 2 * s.pad + 1 + static_cast<int>(rng.below(32)));  // ow = w + 2pad - kw + 1 in 2..33
    s.h = std::max(1, s.kh - 2 * s.pad + 1 + static_cast<int>(rng.below(12)));
    s.m = 1 + static_cast<int>(rng.below(17));
    if (qconv_maxpool_fits(s.h, s.w, s.kh, s.kw, s.pad)) out.push_back(s);
  }
  for (const ConvPoolCase& s : out) EXPECT_TRUE(qconv_maxpool_fits(s.h, s.w, s.kh, s.kw, s.pad)) << s.str();
  return out;
}

struct ConvPoolData {
  std::vector<uint8_t> in;
  std::vector<int8_t> w, packed;
  std::vector<int32_t> bias;
  uint8_t pad_value;
  QConvPoolArgs args(const ConvPoolCase& s, const RequantParams& rq, RequantVariant v, uint8_t* out) const {
    QConvPoolArgs a;
    a.in = in.data(), a.nb = s.nb, a.c = s.c, a.h = s.h, a.w = s.w, a.in_bstride = int64_t{s.c} * s.h * s.w;
    a.kh = s.kh, a.kw = s.kw, a.pad = s.pad, a.pad_value = pad_value;
    a.m = s.m, a.weight = w.data(), a.ldw = s.c * s.kh * s.kw, a.weight_packed = packed.data();
    a.bias = bias.data(), a.rq = &rq, a.variant = v, a.out = out;
    return a;
  }
  ConvPoolData(Rng& rng, const ConvPoolCase& s) {
    const int k = s.c * s.kh * s.kw;
    in = random_bytes(rng, size_t(s.nb) * s.c * s.h * s.w);
    w.resize(size_t(s.m) * k);
    for (auto& x : w) x = static_cast<int8_t>(rng.below(5) == 0 ? (rng.below(2) ? 127 : -128) : int(rng.below(256)) - 128);
    pad_value = static_cast<uint8_t>(rng.below(256));
    bias.resize(size_t(s.m));
    for (auto& b : bias)  // now and then one so large that the sums wrap modulo 2^32
      b = rng.below(8) == 0 ? static_cast<int32_t>(static_cast<uint32_t>(rng.next())) : static_cast<int32_t>(rng.below(1u << 20)) - (1 << 19);
    packed.resize(size_t(qpack_weights_conv_s8(w.data(), s.m, s.c, s.kh, s.kw, k, nullptr)));
    qpack_weights_conv_s8(w.data(), s.m, s.c, s.kh, s.kw, k, packed.data());
  }
};

// The reference is what the engine computed before: im2col, the GEMM to int32, pool + requant.
TEST(QConvPool, ReferenceEqualsIm2colGemmPool) {
  Rng rng(41);
  for (const ConvPoolCase& s : conv_pool_cases(rng))
    for (RequantVariant v : kAllVariants) {
      ConvPoolData d(rng, s);
      ChannelRequant cr(rng, s.m);
      const int k = s.c * s.kh * s.kw, oh = s.h + 2 * s.pad - s.kh + 1, ow = s.w + 2 * s.pad - s.kw + 1;
      const int n = s.nb * oh * ow;
      std::vector<uint8_t> packed(size_t(qk4(k)) * n);
      ConvShape cs{s.nb, s.c, s.h, s.w, s.kh, s.kw, 1, s.pad, false};
      qim2col_u8_ref(cs.args(d.in.data(), d.pad_value, packed.data()));
      std::vector<int8_t> wpad(size_t(s.m) * qk4(k));
      qpad_weights_s8(d.w.data(), s.m, k, k, wpad.data());
      std::vector<int32_t> acc(size_t(s.m) * n);
      QGemmArgs g;
      g.m = s.m, g.n = n, g.k = k, g.w = wpad.data(), g.ldw = qk4(k), g.x = packed.data(), g.bias = d.bias.data();
      g.ldc = oh * ow, g.cols_per_image = oh * ow, g.ldc_image = int64_t{s.m} * oh * ow, g.c_i32 = acc.data();
      qgemm_u8s8_ref(g);
      const size_t pooled = size_t(s.nb) * s.m * (oh / 2) * (ow / 2);
      std::vector<uint8_t> want(pooled), got(pooled);
      qmaxpool2x2_requant_i32_ref({acc.data(), s.nb, s.m, oh, ow, &cr.rq, v, want.data()});
      qconv_maxpool_u8_ref(d.args(s, cr.rq, v, got.data()));
      ASSERT_EQ(want, got) << s.str() << " " << requant_variant_name(v);
    }
}

// Every ISA that has the fused kernel against the reference, bit for bit, nothing written past
// the output.
TEST(QConvPool, EveryIsaMatchesReference) {
  Rng rng(42);
  int checked = 0;
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t || !t->qconv_maxpool_u8) continue;
    for (const ConvPoolCase& s : conv_pool_cases(rng))
      for (RequantVariant v : kAllVariants) {
        ConvPoolData d(rng, s);
        ChannelRequant cr(rng, s.m);
        const int oh = s.h + 2 * s.pad - s.kh + 1, ow = s.w + 2 * s.pad - s.kw + 1;
        const size_t pooled = size_t(s.nb) * s.m * (oh / 2) * (ow / 2);
        std::vector<uint8_t> want(pooled + 64, 0xA5), got(pooled + 64, 0xA5);
        qconv_maxpool_u8_ref(d.args(s, cr.rq, v, want.data()));
        t->qconv_maxpool_u8(d.args(s, cr.rq, v, got.data()));
        ASSERT_EQ(want, got) << isa_name(isa) << " " << s.str() << " " << requant_variant_name(v);
        ++checked;
      }
  }
  if (cpu_has_avx512vbmi()) EXPECT_GT(checked, 300);
}

// Implicit GEMM to int32: stride 1, no padding, windows up to the SIMD kernel's 64 bytes.
struct ConvI32Case {
  int nb, c, h, w, kh, kw, m;
  std::string str() const {
    std::ostringstream s;
    s << "nb=" << nb << " c=" << c << " h=" << h << " w=" << w << " k=" << kh << "x" << kw << " m=" << m;
    return s.str();
  }
};

std::vector<ConvI32Case> conv_i32_cases(Rng& rng) {
  std::vector<ConvI32Case> out = {{4, 6, 14, 14, 5, 5, 16}, {1, 1, 32, 32, 5, 5, 6},  {3, 16, 5, 5, 5, 5, 120},
                                  {2, 3, 8, 8, 3, 3, 17},   {1, 2, 20, 20, 1, 1, 9}, {1, 40, 4, 4, 4, 4, 8},
                                  // a k-block whose taps and pixel pattern span exactly 65 bytes
                                  // (one past the AVX-512 kernel's one-window load)
                                  {2, 1, 3, 29, 2, 3, 5},   {1, 1, 13, 5, 2, 5, 12}};
  for (int it = 0; it < 80; ++it) {
    ConvI32Case s;
    s.nb = 1 + static_cast<int>(rng.below(3));
    s.c = 1 + static_cast<int>(rng.below(8));
    s.kh = 1 + static_cast<int>(rng.below(7));
    s.kw = 1 + static_cast<int>(rng.below(7));
    s.h = s.kh + static_cast<int>(rng.below(20));
    s.w = s.kw + static_cast<int>(rng.below(36));
    s.m = 1 + static_cast<int>(rng.below(40));
    if (qconv_i32_fits(s.c, s.h, s.w, s.kh, s.kw)) out.push_back(s);
  }
  for (const ConvI32Case& s : out) EXPECT_TRUE(qconv_i32_fits(s.c, s.h, s.w, s.kh, s.kw)) << s.str();
  return out;
}

struct ConvI32Data {
  std::vector<uint8_t> in;
  std::vector<int8_t> w, wt;
  std::vector<int32_t> bias;
  ConvI32Data(Rng& rng, const ConvI32Case& s) {
    const int k = s.c * s.kh * s.kw;
    in = random_bytes(rng, size_t(s.nb) * s.c * s.h * s.w + kQConvSlack);
    w.resize(size_t(s.m) * k);
    for (auto& x : w) x = static_cast<int8_t>(rng.below(5) == 0 ? (rng.below(2) ? 127 : -128) : int(rng.below(256)) - 128);
    bias.resize(size_t(s.m));
    for (auto& b : bias)
      b = rng.below(8) == 0 ? static_cast<int32_t>(static_cast<uint32_t>(rng.next())) : static_cast<int32_t>(rng.below(1u << 20)) - (1 << 19);
    wt.resize(size_t(qk4(k)) * ((s.m + 15) & ~15));
    qpack_weights_t_s8(w.data(), s.m, k, k, wt.data());
  }
  QConvI32Args args(const ConvI32Case& s, int32_t* out) const {
    QConvI32Args a;
    a.in = in.data(), a.nb = s.nb, a.c = s.c, a.h = s.h, a.w = s.w, a.in_bstride = int64_t{s.c} * s.h * s.w;
    a.kh = s.kh, a.kw = s.kw, a.m = s.m, a.weight = w.data(), a.ldw = s.c * s.kh * s.kw, a.weight_t = wt.data();
    a.bias = bias.data(), a.out = out;
    return a;
  }
};

// The reference gives what im2col + the GEMM to int32 gave.
TEST(QConvI32, ReferenceEqualsIm2colGemm) {
  Rng rng(43);
  for (const ConvI32Case& s : conv_i32_cases(rng)) {
    ConvI32Data d(rng, s);
    const int k = s.c * s.kh * s.kw, oh = s.h - s.kh + 1, ow = s.w - s.kw + 1, n = s.nb * oh * ow;
    std::vector<uint8_t> packed(size_t(qk4(k)) * n);
    ConvShape cs{s.nb, s.c, s.h, s.w, s.kh, s.kw, 1, 0, false};
    qim2col_u8_ref(cs.args(d.in.data(), 0, packed.data()));
    std::vector<int8_t> wpad(size_t(s.m) * qk4(k));
    qpad_weights_s8(d.w.data(), s.m, k, k, wpad.data());
    std::vector<int32_t> want(size_t(s.m) * n), got(want.size());
    QGemmArgs g;
    g.m = s.m, g.n = n, g.k = k, g.w = wpad.data(), g.ldw = qk4(k), g.x = packed.data(), g.bias = d.bias.data();
    g.ldc = oh * ow, g.cols_per_image = oh * ow, g.ldc_image = int64_t{s.m} * oh * ow, g.c_i32 = want.data();
    qgemm_u8s8_ref(g);
    qconv_i32_ref(d.args(s, got.data()));
    ASSERT_EQ(want, got) << s.str();
  }
}

// Every ISA that has the kernel against the reference, bit for bit, nothing written past the
// output (the input is read up to kQConvSlack bytes past its end, as the contract allows).
TEST(QConvI32, EveryIsaMatchesReference) {
  Rng rng(44);
  int checked = 0;
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t || !t->qconv_i32) continue;
    for (const ConvI32Case& s : conv_i32_cases(rng)) {
      ConvI32Data d(rng, s);
      const size_t n = size_t(s.nb) * s.m * (s.h - s.kh + 1) * (s.w - s.kw + 1);
      std::vector<int32_t> want(n + 16, 0x5A5A5A5A), got(n + 16, 0x5A5A5A5A);
      qconv_i32_ref(d.args(s, want.data()));
      t->qconv_i32(d.args(s, got.data()));
      ASSERT_EQ(want, got) << isa_name(isa) << " " << s.str();
      ++checked;
    }
  }
  if (cpu_has_avx512vbmi()) EXPECT_GT(checked, 40);
}

// LeNet's conv1 end to end on each ISA: quantize nothing, im2col + GEMM + pool equal ref.
TEST(QConv, LeNetConv1PipelineEveryIsa) {
  Rng rng(26);
  const ConvShape s{4, 1, 32, 32, 5, 5, 1, 0, false};
  const auto in = random_bytes(rng, 4 * 32 * 32);
  const int m = 6, k = 25, k4 = 28, n = s.nb * 28 * 28;
  std::vector<int8_t> w(static_cast<size_t>(m) * k4, 0);
  for (int i = 0; i < m; ++i)
    for (int p = 0; p < k; ++p) w[static_cast<size_t>(i * k4 + p)] = static_cast<int8_t>(static_cast<int>(rng.below(256)) - 128);
  std::vector<int32_t> bias(m), q31(m), shift(m);
  qbias_eff(w.data(), m, k, k4, nullptr, 128, bias.data(), "conv1");
  for (int i = 0; i < m; ++i) {
    const QuantizedMultiplier qm = quantize_multiplier(0.004 * (i + 1));
    q31[i] = qm.q31;
    shift[i] = qm.shift;
  }
  RequantParams rq;
  rq.q31 = q31.data();
  rq.shift = shift.data();
  rq.z_out = 120;
  rq.lo = 120;  // ReLU
  std::vector<uint8_t> results[3];
  int r = 0;
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t) continue;
    std::vector<uint8_t> packed(s.packed_size()), conv(static_cast<size_t>(n) * m), pooled(conv.size() / 4);
    t->qim2col_u8(s.args(in.data(), 128, packed.data()));
    QGemmArgs g;
    g.m = m;
    g.n = n;
    g.k = k;
    g.w = w.data();
    g.ldw = k4;
    g.x = packed.data();
    g.bias = bias.data();
    g.ldc = 784;  // NCHW output of 4 images
    g.cols_per_image = 784;
    g.ldc_image = 6 * 784;
    g.c_u8 = conv.data();
    g.rq = &rq;
    t->qgemm_u8s8(g);
    t->qmaxpool2x2_u8(conv.data(), s.nb * m, 28, 28, pooled.data());
    results[r++] = pooled;
    if (r > 1) {
      ASSERT_EQ(results[0], results[r - 1]) << isa_name(isa);
    }
  }
}

}  // namespace
}  // namespace lowbit
