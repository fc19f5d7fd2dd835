// Every integer GEMM this CPU supports against qgemm_u8s8_ref, bit for bit: shapes below, at and
// above the register tiles (AVX-512: 4 and 6 rows, 16..64 columns; AVX2: 2 rows, 4..16 columns)
// and every multiple of 4 in K; every requantization variant with per-channel multipliers from
// 1e-6 to 50; int32 output; outputs that span several images; extreme values. The reference
// itself is checked against a direct int64 sum on the plain matrices.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/qkernels.h"
#include "lowbit/core.h"

namespace lowbit {
namespace {

const RequantVariant kVariants[] = {RequantVariant::fixedpoint,    RequantVariant::fixedpoint_floor,
                                    RequantVariant::float_nearest, RequantVariant::float_floor,
                                    RequantVariant::divide_nearest, RequantVariant::divide_floor};

// How the output columns are laid out (QGemmArgs::cols_per_image and strides).
struct Layout {
  int cols_per_image;  // 0: plain matrix
  int64_t ldc, ldc_image;
};

enum class Fill { random, extreme_neg, extreme_pos, zeros, small };

// One GEMM problem with random data, its requantization parameters and output buffers.
struct Problem {
  int m, n, k;
  int64_t ldw;
  std::vector<int8_t> w, wt;  // wt: W^T packed for QGemmArgs::wt
  std::vector<uint8_t> x;  // packed [k4/4][n][4]
  std::vector<int32_t> bias, q31, shift, divisor;
  std::vector<float> scale;
  RequantParams rq;
  Layout layout;
  bool int32_out;
  RequantVariant variant;
  int64_t out_size;

  Problem(Rng& rng, int m_, int n_, int k_, RequantVariant v, bool i32, Layout lay, Fill fill = Fill::random)
      : m(m_), n(n_), k(k_), layout(lay), int32_out(i32), variant(v) {
    const int k4 = qk4(k);
    ldw = k4 + 4 * static_cast<int>(rng.below(2));
    w.assign(static_cast<size_t>(m * ldw), 0);
    x.resize(static_cast<size_t>(k4) * n);
    for (int i = 0; i < m; ++i)
      for (int p = 0; p < ldw; ++p) {
        int8_t v8 = 0;
        if (p < k) {
          switch (fill) {
            case Fill::random: v8 = static_cast<int8_t>(static_cast<int>(rng.below(256)) - 128); break;
            case Fill::extreme_neg: v8 = -128; break;
            case Fill::extreme_pos: v8 = 127; break;
            case Fill::zeros: v8 = 0; break;
            case Fill::small: v8 = static_cast<int8_t>(static_cast<int>(rng.below(7)) - 3); break;
          }
        } else if (p >= k4) {
          v8 = static_cast<int8_t>(rng.below(256));  // beyond K4: never read
        }
        w[static_cast<size_t>(i * ldw + p)] = v8;
      }
    wt.resize(static_cast<size_t>(k4) * ((m + 15) & ~15));
    qpack_weights_t_s8(w.data(), m, k, ldw, wt.data());
    // Padded rows of X get random bytes too: the zero columns of W must cancel them.
    for (auto& b : x) {
      if (fill == Fill::random) b = static_cast<uint8_t>(rng.below(256));
      else if (fill == Fill::small) b = static_cast<uint8_t>(rng.below(32));
      else b = fill == Fill::zeros ? 0 : 255;
    }
    // Typical |acc| ~ 74 * 128 * sqrt(k) for uniform data; aim M at outputs of tens, spread 1e3.
    const double typical = 74.0 * 128.0 * std::sqrt(static_cast<double>(k)) + 1.0;
    bias.resize(m);
    q31.resize(m);
    shift.resize(m);
    divisor.resize(m);
    scale.resize(m);
    for (int i = 0; i < m; ++i) {
      bias[i] = fill == Fill::small ? static_cast<int32_t>(rng.below(129)) - 64
                                    : static_cast<int32_t>(rng.below(1u << 21)) - (1 << 20);
      double mult = 40.0 / typical * std::exp(std::log(1e-3) + std::log(1e3) * 1.5 * rng.uniform());
      if (rng.below(8) == 0) mult = 1e-6;
      if (rng.below(8) == 0) mult = 0.99;
      if (rng.below(8) == 0) mult = 1.0 + 49.0 * rng.uniform();  // left shifts, saturation
      mult = std::min(std::max(mult, 1e-6), 50.0);
      const QuantizedMultiplier qm = quantize_multiplier(mult);
      q31[i] = qm.q31;
      shift[i] = qm.shift;
      scale[i] = static_cast<float>(mult);
      divisor[i] = mult > 2.0 ? 1 : divisor_for_multiplier(mult);
    }
    rq.q31 = q31.data();
    rq.shift = shift.data();
    rq.scale = scale.data();
    rq.divisor = divisor.data();
    rq.z_out = static_cast<int32_t>(rng.below(256));
    rq.lo = static_cast<int32_t>(rng.below(3) == 0 ? rq.z_out : rng.below(64));  // sometimes ReLU
    rq.hi = std::max(rq.lo, 255 - static_cast<int32_t>(rng.below(3) == 0 ? 0 : rng.below(64)));
    // Output buffer size: one past the largest offset, plus a guard.
    int64_t last = 0;
    if (layout.cols_per_image <= 0) {
      last = (m - 1) * layout.ldc + (n - 1);
    } else {
      const int p = layout.cols_per_image;
      last = (m - 1) * layout.ldc + ((n - 1) / p) * layout.ldc_image + std::min(n - 1, p - 1);
    }
    out_size = last + 1 + 67;
  }

  QGemmArgs args(void* out, bool with_wt = false) const {
    QGemmArgs a;
    a.m = m;
    a.n = n;
    a.k = k;
    a.w = w.data();
    a.ldw = ldw;
    a.wt = with_wt ? wt.data() : nullptr;
    a.x = x.data();
    a.bias = bias.data();
    a.ldc = layout.ldc;
    a.cols_per_image = layout.cols_per_image;
    a.ldc_image = layout.ldc_image;
    a.rq = &rq;
    a.variant = variant;
    if (int32_out)
      a.c_i32 = static_cast<int32_t*>(out);
    else
      a.c_u8 = static_cast<uint8_t*>(out);
    return a;
  }

  std::string describe() const {
    std::ostringstream s;
    s << "m=" << m << " n=" << n << " k=" << k << " ldw=" << ldw << " variant=" << requant_variant_name(variant)
      << (int32_out ? " int32" : " u8") << " cols_per_image=" << layout.cols_per_image << " ldc=" << layout.ldc
      << " ldc_image=" << layout.ldc_image << " z_out=" << rq.z_out << " lo=" << rq.lo << " hi=" << rq.hi;
    return s.str();
  }
};

// Runs `fn` and the reference on the same problem, with identically pre-filled outputs (so a
// stray write shows as a difference), and compares every element. Twice: without and with the
// transposed weights (a kernel may take another path with them).
::testing::AssertionResult same_as_ref_once(QGemmFn fn, const char* isa, const Problem& p, bool with_wt) {
  if (p.int32_out) {
    std::vector<int32_t> want(static_cast<size_t>(p.out_size), 0x5A5A5A5A), got = want;
    qgemm_u8s8_ref(p.args(want.data()));
    fn(p.args(got.data(), with_wt));
    for (size_t i = 0; i < want.size(); ++i)
      if (want[i] != got[i])
        return ::testing::AssertionFailure() << isa << (with_wt ? " (with wt) " : " ") << p.describe() << " offset " << i << " expected "
                                             << want[i] << " got " << got[i];
  } else {
    std::vector<uint8_t> want(static_cast<size_t>(p.out_size), 0xA5), got = want;
    qgemm_u8s8_ref(p.args(want.data()));
    fn(p.args(got.data(), with_wt));
    for (size_t i = 0; i < want.size(); ++i)
      if (want[i] != got[i])
        return ::testing::AssertionFailure() << isa << (with_wt ? " (with wt) " : " ") << p.describe() << " offset " << i << " (row "
                                             << i / std::max<int64_t>(p.layout.ldc, 1) << ") expected "
                                             << int{want[i]} << " got " << int{got[i]};
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult same_as_ref(QGemmFn fn, const char* isa, const Problem& p) {
  ::testing::AssertionResult r = same_as_ref_once(fn, isa, p, false);
  return r ? same_as_ref_once(fn, isa, p, true) : r;
}

struct IsaUnderTest {
  Isa isa;
  QGemmFn fn;
};

std::vector<IsaUnderTest> simd_isas() {
  std::vector<IsaUnderTest> out;
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (t) out.push_back({isa, t->qgemm_u8s8});
    else std::printf("[ note ] %s not supported by this CPU: not tested\n", isa_name(isa));
  }
  return out;
}

Layout plain(int n, int extra = 0) { return {0, n + extra, 0}; }

TEST(QGemm, ReferenceMatchesDirectSum) {
  Rng rng(1);
  for (int it = 0; it < 40; ++it) {
    const int m = 1 + static_cast<int>(rng.below(9)), n = 1 + static_cast<int>(rng.below(40)),
              k = 1 + static_cast<int>(rng.below(70));
    Problem p(rng, m, n, k, RequantVariant::fixedpoint, true, plain(n));
    std::vector<int32_t> c(static_cast<size_t>(p.out_size));
    qgemm_u8s8_ref(p.args(c.data()));
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        int64_t s = p.bias[i];
        for (int q = 0; q < k; ++q)  // X(q, j) of the packed layout, spelled out
          s += int64_t{p.w[static_cast<size_t>(i * p.ldw + q)]} * p.x[static_cast<size_t>((q / 4) * n * 4 + j * 4 + q % 4)];
        ASSERT_EQ(c[static_cast<size_t>(i * n + j)], s) << p.describe() << " i=" << i << " j=" << j;
      }
    // Requantized output is requantize_ref of that sum.
    Problem pu = p;
    pu.int32_out = false;
    pu.variant = kVariants[it % 6];
    std::vector<uint8_t> cu(static_cast<size_t>(p.out_size));
    qgemm_u8s8_ref(pu.args(cu.data()));
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j)
        ASSERT_EQ(cu[static_cast<size_t>(i * n + j)], requantize_ref(c[static_cast<size_t>(i * n + j)], pu.rq, pu.variant, i))
            << pu.describe() << " i=" << i << " j=" << j;
  }
}

TEST(QGemm, EveryRowCountAndEdgeColumns) {
  Rng rng(2);
  const int ns[] = {1, 3, 4, 5, 15, 16, 17, 33, 63, 64, 65, 100};
  const int ks[] = {1, 4, 5, 25};
  for (const IsaUnderTest& t : simd_isas()) {
    int c = 0;
    for (int m = 1; m <= 17; ++m)
      for (int n : ns)
        for (int k : ks) {
          Problem p(rng, m, n, k, kVariants[c % 6], c % 7 == 0, plain(n, c % 3), Fill::random);
          ++c;
          ASSERT_TRUE(same_as_ref(t.fn, isa_name(t.isa), p));
        }
  }
}

TEST(QGemm, DepthAroundEveryMultipleOfFour) {
  Rng rng(3);
  std::vector<int> ks;
  for (int k = 1; k <= 70; ++k) ks.push_back(k);
  for (int k : {127, 128, 129, 150, 151, 152, 399, 400, 401, 1000, 2400}) ks.push_back(k);
  for (const IsaUnderTest& t : simd_isas()) {
    int c = 0;
    for (int k : ks)
      for (int m : {6, 10, 16})
        for (int n : {24, 64, 67}) {
          Problem p(rng, m, n, k, kVariants[c % 6], c % 5 == 0, plain(n), Fill::random);
          ++c;
          ASSERT_TRUE(same_as_ref(t.fn, isa_name(t.isa), p));
        }
  }
}

TEST(QGemm, EveryColumnCount) {
  Rng rng(4);
  std::vector<int> ns;
  for (int n = 1; n <= 140; ++n) ns.push_back(n);
  for (int n : {191, 192, 193, 255, 256, 257, 784}) ns.push_back(n);
  for (const IsaUnderTest& t : simd_isas()) {
    int c = 0;
    for (int n : ns)
      for (int m : {5, 6, 7}) {
        Problem p(rng, m, n, 28, kVariants[c % 6], c % 4 == 0, plain(n, c % 2), Fill::random);
        ++c;
        ASSERT_TRUE(same_as_ref(t.fn, isa_name(t.isa), p));
      }
  }
}

TEST(QGemm, EveryVariantEveryOutputLayout) {
  Rng rng(5);
  for (const IsaUnderTest& t : simd_isas()) {
    for (RequantVariant v : kVariants)
      for (bool i32 : {false, true})
        for (int m : {1, 6, 10, 16})
          for (int n : {7, 100, 300}) {
            // NCHW of several images (P pixels per image, optional row/image padding), batch-major
            // logits (P = 1), and P not a multiple of any vector width.
            const int ps[] = {1, 3, 16, 17, 25, 100};
            for (int pp : ps) {
              const int64_t ldc = pp + static_cast<int>(rng.below(3));
              const int64_t ldc_image = pp == 1 ? m : m * ldc + static_cast<int>(rng.below(5));
              Problem p(rng, m, n, 1 + static_cast<int>(rng.below(160)), v, i32,
                        {pp, pp == 1 ? 1 : ldc, ldc_image});
              ASSERT_TRUE(same_as_ref(t.fn, isa_name(t.isa), p));
            }
            Problem p(rng, m, n, 57, v, i32, plain(n, 5));
            ASSERT_TRUE(same_as_ref(t.fn, isa_name(t.isa), p));
          }
  }
}

// The layers with one output pixel per image at small batches (conv3, fc1, fc2 at batch 1):
// batch-major output (C(i, j) at j * ldc_image + i), n < 16, where the AVX-512 kernel puts 16
// channels in a vector (QGemmArgs::wt). Channel counts around every multiple of 16 and 64.
TEST(QGemm, SmallBatchOneColumnPerImage) {
  Rng rng(9);
  const int ms[] = {1, 2, 10, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 65, 84, 120, 127, 128, 129, 200};
  for (const IsaUnderTest& t : simd_isas()) {
    int c = 0;
    for (int m : ms)
      for (int n = 1; n <= 17; ++n)
        for (int k : {1, 3, 4, 5, 84, 120, 400}) {
          if ((m + n + k + c) % 3 != 0 && k > 5 && n > 5) continue;  // a third of the big ones
          const int64_t ldc_image = m + static_cast<int>(rng.below(3));
          Problem p(rng, m, n, k, kVariants[c % 6], c % 5 == 0, {1, 1, ldc_image},
                    c % 11 == 0 ? Fill::extreme_neg : Fill::random);
          ++c;
          ASSERT_TRUE(same_as_ref(t.fn, isa_name(t.isa), p));
        }
  }
}

// 255 x -128 everywhere: every product at the most negative value, where a vpmaddubsw pair sum
// (-65280) would saturate int16. Also the most positive products and all zeros.
TEST(QGemm, ExtremeValues) {
  Rng rng(6);
  for (const IsaUnderTest& t : simd_isas())
    for (Fill f : {Fill::extreme_neg, Fill::extreme_pos, Fill::zeros})
      for (int k : {1, 2, 3, 4, 25, 150, 400, 2400, 8000})
        for (bool i32 : {true, false}) {
          Problem p(rng, 7, 67, k, RequantVariant::fixedpoint, i32, plain(67), f);
          ASSERT_TRUE(same_as_ref(t.fn, isa_name(t.isa), p));
          if (i32 && f == Fill::extreme_neg) {  // and the reference has the exact value
            std::vector<int32_t> c(static_cast<size_t>(p.out_size));
            qgemm_u8s8_ref(p.args(c.data()));
            EXPECT_EQ(c[0], int64_t{255} * -128 * k + p.bias[0]) << "k=" << k;
          }
        }
}

// Multipliers that are powers of two (and small multiples) on small accumulators make exact ties
// frequent in every rounding step: srdhm, the rounding shift, float rounding, the division.
TEST(QGemm, RoundingTies) {
  Rng rng(8);
  const double mults[] = {0.5, 0.25, 0.125, 0.0625, 0.03125, 0.1875, 0.078125, 1.0, 2.0, 4.0, 0.375};
  for (const IsaUnderTest& t : simd_isas())
    for (RequantVariant v : kVariants)
      for (int k : {1, 3, 8, 16})
        for (int rep = 0; rep < 4; ++rep) {
          Problem p(rng, 11, 70, k, v, false, plain(70), Fill::small);
          for (int i = 0; i < p.m; ++i) {
            const double mult = mults[(i + rep) % 11];
            const QuantizedMultiplier qm = quantize_multiplier(mult);
            p.q31[i] = qm.q31;
            p.shift[i] = qm.shift;
            p.scale[i] = static_cast<float>(mult);
            p.divisor[i] = mult > 2.0 ? 1 : divisor_for_multiplier(mult);
          }
          p.rq.z_out = 128;
          p.rq.lo = rep % 2 ? 128 : 0;  // fused ReLU takes a shorter path in the SIMD kernels
          p.rq.hi = 255;
          ASSERT_TRUE(same_as_ref(t.fn, isa_name(t.isa), p));
        }
}

// k = 0 (the output is the bias), and m = 0 or n = 0 (nothing written).
TEST(QGemm, EmptyShapes) {
  Rng rng(9);
  for (const IsaUnderTest& t : simd_isas()) {
    for (bool i32 : {true, false}) {
      Problem p(rng, 7, 37, 0, RequantVariant::fixedpoint, i32, plain(37));
      ASSERT_TRUE(same_as_ref(t.fn, isa_name(t.isa), p));
    }
    std::vector<uint8_t> c(16, 0xEE);
    Problem p(rng, 3, 5, 9, RequantVariant::fixedpoint, false, plain(5));
    QGemmArgs a = p.args(c.data());
    a.m = 0;
    t.fn(a);
    a.m = 3;
    a.n = 0;
    t.fn(a);
    for (uint8_t b : c) ASSERT_EQ(b, 0xEE) << isa_name(t.isa);
  }
}

// The LeNet-5 layers as the engine runs them, every variant.
TEST(QGemm, LeNetShapes) {
  Rng rng(7);
  struct Shape3 {
    int m, k, n;
  };
  const Shape3 shapes[] = {{6, 25, 784 * 2}, {16, 150, 100 * 3}, {120, 400, 37}, {84, 120, 256}, {10, 84, 255}};
  for (const IsaUnderTest& t : simd_isas())
    for (const Shape3& s : shapes)
      for (RequantVariant v : kVariants) {
        Problem p(rng, s.m, s.n, s.k, v, false, plain(s.n));
        ASSERT_TRUE(same_as_ref(t.fn, isa_name(t.isa), p));
      }
}

TEST(QGemm, DispatchTableHoldsEveryKernel) {
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512}) {
    const KernelTable* t = kernels_for(isa);
    if (!t) continue;
    EXPECT_NE(t->qgemm_u8s8, nullptr) << isa_name(isa);
    EXPECT_NE(t->qim2col_u8, nullptr) << isa_name(isa);
    EXPECT_NE(t->qpack_u8, nullptr) << isa_name(isa);
    EXPECT_NE(t->qmaxpool2x2_u8, nullptr) << isa_name(isa);
    EXPECT_NE(t->qavgpool2x2_u8, nullptr) << isa_name(isa);
    EXPECT_NE(t->qquantize_f32_u8, nullptr) << isa_name(isa);
  }
  EXPECT_EQ(kernels_for(Isa::ref)->qgemm_u8s8, &qgemm_u8s8_ref);
}

}  // namespace
}  // namespace lowbit
