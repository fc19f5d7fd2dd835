// Finite-difference checks of every layer's backward pass and of the whole network.
// Layers run in float, so differences are central with a step of 1e-3 (float rounding of the
// probe loss is then about 1e-4) and the bound is relative 2e-2 plus a small absolute floor: a
// wrong index or a missing term is off by far more. Inputs avoid the kinks of ReLU and max pooling
// (no value within two steps of 0 or of another), where a finite difference is not a derivative.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>

#include "lowbit/nn.h"

namespace lowbit {
namespace {

constexpr double kStep = 1e-3;

// Loss = sum(out * r): its gradient w.r.t. out is r.
double probe_loss(Layer& l, const Tensor& x, const Tensor& r) {
  Tensor y(l.output_shape(x.shape()));
  l.forward(x, y);
  double s = 0;
  for (int64_t i = 0; i < y.numel(); ++i) s += double{y[i]} * r[i];
  return s;
}

void expect_close(double num, double ana, const std::string& what, int64_t i) {
  double tol = 2e-2 * std::max(std::fabs(num), std::fabs(ana)) + 2e-3;
  EXPECT_NEAR(num, ana, tol) << what << " index " << i;
}

// Checks d(loss)/d(input) and d(loss)/d(params) of one layer at x.
void check_layer(Layer& l, const Tensor& x, uint64_t seed) {
  Rng rng(seed);
  Tensor y(l.output_shape(x.shape())), r(y.shape()), dx(x.shape());
  for (int64_t i = 0; i < r.numel(); ++i) r[i] = rng.uniform(-1, 1);
  l.forward(x, y);
  for (Param& p : l.params()) p.grad->zero();
  l.backward(x, y, r, &dx);
  Tensor xp = x;
  for (int64_t i = 0; i < x.numel(); ++i) {
    float keep = xp[i];
    xp[i] = keep + static_cast<float>(kStep);
    double up = probe_loss(l, xp, r);
    xp[i] = keep - static_cast<float>(kStep);
    double down = probe_loss(l, xp, r);
    xp[i] = keep;
    expect_close((up - down) / (2 * kStep), dx[i], l.type() + " input", i);
  }
  for (Param& p : l.params()) {
    Tensor ana = *p.grad;
    for (int64_t i = 0; i < p.value->numel(); ++i) {
      float keep = (*p.value)[i];
      (*p.value)[i] = keep + static_cast<float>(kStep);
      double up = probe_loss(l, x, r);
      (*p.value)[i] = keep - static_cast<float>(kStep);
      double down = probe_loss(l, x, r);
      (*p.value)[i] = keep;
      expect_close((up - down) / (2 * kStep), ana[i], l.type() + " " + p.name, i);
    }
  }
}

// Values in +-[0.1, 1] with distinct magnitudes spaced by more than the step: no kinks, no ties.
Tensor kink_free_input(const Shape& s, uint64_t seed) {
  Tensor x(s);
  Rng rng(seed);
  std::vector<int> order(static_cast<size_t>(x.numel()));
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  rng.shuffle(order);
  for (int64_t i = 0; i < x.numel(); ++i) {
    double mag = 0.1 + 0.9 * (order[size_t(i)] + 0.5) / static_cast<double>(x.numel());
    x[i] = static_cast<float>(rng.uniform() < 0.5 ? -mag : mag);
  }
  return x;
}

TEST(GradCheck, Conv2dAllGeometries) {
  struct Case { int c, oc, k, stride, pad, h; bool bias; };
  for (Case cs : {Case{1, 2, 3, 1, 0, 6, false}, Case{2, 3, 3, 2, 1, 7, true}, Case{3, 2, 1, 1, 0, 4, true},
                  Case{2, 2, 5, 1, 2, 5, false}, Case{2, 17, 3, 1, 1, 5, true},  // 17: dW with lanes along OC
                  Case{3, 4, 3, 1, 0, 3, true},     // the kernel covers the image (as conv3)
                  Case{3, 5, 5, 1, 0, 9, true}}) {  // 5x5, 5 wide: the lane kernels (conv2's path)
    Conv2d l(cs.c, cs.oc, cs.k, cs.stride, cs.pad, cs.bias);
    Rng rng(3);
    l.init(rng);
    SCOPED_TRACE(l.spec().dump());
    // Batches of 1 and 3 (the 3 spans several GEMM tiles and both threads).
    check_layer(l, kink_free_input({1, cs.c, cs.h, cs.h}, 1), 2);
    check_layer(l, kink_free_input({3, cs.c, cs.h, cs.h}, 4), 5);
    // Lane groups of 16 and 8 images (the second partly empty); batches 1 and 3 take the GEMMs.
    if (cs.k == 5 && cs.pad == 0) check_layer(l, kink_free_input({24, cs.c, cs.h, cs.h}, 6), 7);
  }
}

// The forward pass itself against direct loops (stride 1 runs without im2col, stride 2 and 1x1
// outputs through it): every geometry kind, batches 1, 3 and 19, tolerance growing with the sum
// length.
TEST(Conv2dForward, MatchesDirectLoops) {
  struct Case { int c, oc, k, stride, pad, h, w; bool bias; };
  for (Case cs : {Case{1, 6, 5, 1, 0, 32, 32, false}, Case{6, 16, 5, 1, 0, 14, 14, true}, Case{16, 7, 5, 1, 0, 5, 5, false},
                  Case{2, 3, 3, 1, 1, 7, 9, true}, Case{3, 5, 5, 1, 2, 6, 4, false}, Case{2, 3, 3, 2, 1, 7, 7, true},
                  Case{1, 1, 1, 1, 0, 3, 40, false}, Case{4, 9, 2, 1, 0, 33, 2, true}}) {
    Conv2d l(cs.c, cs.oc, cs.k, cs.stride, cs.pad, cs.bias);
    Rng rng(7);
    l.init(rng);
    SCOPED_TRACE(l.spec().dump());
    for (int n : {1, 3, 19}) {  // 19: a lane group of 16 (where the lane kernels fit) and 3 more
      Tensor x(Shape{n, cs.c, cs.h, cs.w});
      for (int64_t i = 0; i < x.numel(); ++i) x[i] = rng.uniform(-1, 1);
      Tensor y(l.output_shape(x.shape()));
      l.forward(x, y);
      const int oh = y.dim(2), ow = y.dim(3);
      for (int b = 0; b < n; ++b)
        for (int o = 0; o < cs.oc; ++o)
          for (int oy = 0; oy < oh; ++oy)
            for (int ox = 0; ox < ow; ++ox) {
              double s = cs.bias ? l.bias[o] : 0.0;
              for (int ci = 0; ci < cs.c; ++ci)
                for (int ky = 0; ky < cs.k; ++ky)
                  for (int kx = 0; kx < cs.k; ++kx) {
                    const int iy = oy * cs.stride - cs.pad + ky, ix = ox * cs.stride - cs.pad + kx;
                    if (iy < 0 || iy >= cs.h || ix < 0 || ix >= cs.w) continue;
                    s += double{l.weight[((int64_t{o} * cs.c + ci) * cs.k + ky) * cs.k + kx]} *
                         x[((int64_t{b} * cs.c + ci) * cs.h + iy) * cs.w + ix];
                  }
              const float got = y[((int64_t{b} * cs.oc + o) * oh + oy) * ow + ox];
              ASSERT_NEAR(got, s, 1e-5 * std::sqrt(double(cs.c * cs.k * cs.k)) + 1e-6)
                  << "n=" << n << " b=" << b << " o=" << o << " oy=" << oy << " ox=" << ox;
            }
    }
  }
}

// Sequential::forward runs Linear and whole-image Conv2d layers against weights transposed once
// per call (freeze/thaw) and fuses conv -> ReLU -> 2x2 max pool; calling each layer directly takes
// the plain paths. Same values, every activation (LeNet-5 both ways, and a padded conv with an odd
// output size whose last row and column the pool drops).
TEST(SequentialForward, FrozenAndFusedPathsMatchDirectLayerCalls) {
  for (int variant = 0; variant < 5; ++variant) {
      const bool bias = variant % 2 == 1;
      Sequential m;
      if (variant < 4) {
        m = build_model(variant < 2 ? "lenet5" : "lenet5-classic", bias);
      } else {
        m.input_shape = {2, 7, 7};
        m.add(std::make_unique<Conv2d>(2, 3, 3, 1, 1, true), "conv");
        m.add(std::make_unique<Activation>(ActKind::relu), "relu");
        m.add(std::make_unique<Pool2d>(PoolKind::max, 2, 2), "pool");
        m.add(std::make_unique<Flatten>(), "flatten");
        m.add(std::make_unique<Linear>(27, 4, true), "fc");
      }
      const char* name = variant < 2 ? "lenet5" : variant < 4 ? "lenet5-classic" : "padded";
      m.init(5);
      Rng rng(6);
      Shape xs = m.input_shape;
      xs.insert(xs.begin(), 37);
      Tensor x(xs);
      for (int64_t i = 0; i < x.numel(); ++i) x[i] = rng.uniform(-1, 1);
      m.forward(x);
      Tensor cur = x, next;
      for (size_t i = 0; i < m.size(); ++i) {
        next.resize(m.layer(i).output_shape(cur.shape()));
        m.layer(i).forward(cur, next);
        std::swap(cur, next);
        const Tensor& got = m.activation(i + 1);
        ASSERT_EQ(got.shape(), cur.shape()) << name << " layer " << i;
        for (int64_t j = 0; j < got.numel(); ++j)
          ASSERT_NEAR(got[j], cur[j], 1e-4 * (1 + std::fabs(cur[j]))) << name << " layer " << i << " index " << j;
      }
  }
}

TEST(GradCheck, Linear) {
  for (bool bias : {false, true}) {
    Linear l(7, 5, bias);
    Rng rng(1);
    l.init(rng);
    check_layer(l, kink_free_input({3, 7}, 2), 3);
  }
}

// grads_by_rows (Sequential's split of Linear and whole-image Conv2d gradients across threads):
// any split of the rows gives the bits of the unsplit call, both replacing and accumulating,
// and the values of backward()'s gradients.
TEST(GradsByRows, AnySplitGivesTheSameBitsAndBackwardsValues) {
  Linear fc(37, 23, true);
  Conv2d conv(3, 11, 4, 1, 0, true);  // 4x4 input: the kernel covers it
  for (Layer* l : {static_cast<Layer*>(&fc), static_cast<Layer*>(&conv)}) {
    SCOPED_TRACE(l->spec().dump());
    Rng rng(41);
    l->init(rng);
    Tensor x(l == &fc ? Shape{19, 37} : Shape{19, 3, 4, 4});
    for (int64_t i = 0; i < x.numel(); ++i) x[i] = rng.uniform(-1, 1);
    Tensor y(l->output_shape(x.shape())), dy(y.shape());
    for (int64_t i = 0; i < dy.numel(); ++i) dy[i] = rng.uniform(-1, 1);
    const int rows = l->grad_rows(x.shape());
    ASSERT_EQ(rows, 23 - 12 * (l == &conv));
    l->forward(x, y);
    std::vector<Tensor> ref, start, whole, split;
    for (Param& p : l->params()) {
      p.grad->zero();
      start.emplace_back(p.grad->shape());
      for (int64_t i = 0; i < start.back().numel(); ++i) start.back()[i] = rng.uniform(-1, 1);
    }
    l->backward(x, y, dy, nullptr);
    for (Param& p : l->params()) ref.push_back(*p.grad);
    auto run = [&](std::vector<int> cuts, bool accumulate) {
      std::vector<Tensor> out = start;
      std::vector<Tensor*> g;
      for (Tensor& t : out) g.push_back(&t);
      for (size_t c = 0; c + 1 < cuts.size(); ++c) l->grads_by_rows(x, dy, cuts[c], cuts[c + 1], g, accumulate);
      return out;
    };
    for (bool accumulate : {false, true}) {
      whole = run({0, rows}, accumulate);
      split = run({0, 1, 6, 6, rows - 1, rows}, accumulate);
      for (size_t k = 0; k < ref.size(); ++k)
        for (int64_t i = 0; i < ref[k].numel(); ++i) {
          ASSERT_EQ(whole[k][i], split[k][i]) << "parameter " << k << " index " << i;
          const float want = ref[k][i] + (accumulate ? start[k][i] : 0.0f);
          ASSERT_NEAR(whole[k][i], want, 1e-5f * 19 * (1 + std::fabs(want))) << "parameter " << k << " index " << i;
        }
    }
  }
}

TEST(GradCheck, Activations) {
  for (ActKind k : {ActKind::relu, ActKind::sigmoid, ActKind::tanh}) {
    Activation l(k);
    check_layer(l, kink_free_input({2, 3, 4, 4}, 7), 8);
  }
}

TEST(GradCheck, Pooling) {
  for (PoolKind k : {PoolKind::max, PoolKind::avg}) {
    Pool2d two(k, 2, 2), three(k, 3, 1);
    check_layer(two, kink_free_input({2, 3, 6, 6}, 9), 10);
    check_layer(three, kink_free_input({1, 2, 5, 5}, 11), 12);
  }
}

TEST(GradCheck, FlattenAndSoftmax) {
  Flatten f;
  check_layer(f, kink_free_input({2, 3, 2, 2}, 13), 14);
  Softmax s;
  check_layer(s, kink_free_input({3, 6}, 15), 16);
}

TEST(GradCheck, SoftmaxCrossEntropy) {
  Tensor z = kink_free_input({4, 10}, 17), dz(z.shape());
  uint8_t labels[4] = {0, 3, 9, 3};
  softmax_cross_entropy(z, labels, &dz);
  for (int64_t i = 0; i < z.numel(); ++i) {
    Tensor zp = z;
    zp[i] += static_cast<float>(kStep);
    double up = softmax_cross_entropy(zp, labels, nullptr);
    zp[i] -= static_cast<float>(2 * kStep);
    double down = softmax_cross_entropy(zp, labels, nullptr);
    expect_close((up - down) / (2 * kStep), dz[i], "cross-entropy logits", i);
  }
}

// The whole LeNet-5 (with biases) under the cross-entropy loss: every parameter tensor is probed
// at a spread of indices through the full forward pass. The classic variant is smooth; in the ReLU
// variant a kink can fall between two probes, so a few misses are allowed there (and counted).
// Prints a mismatch; a failure only in the smooth model (the ReLU model's count is checked below).
#define ADD_FAILURE_AT_KINK(classic, model, layer, param, i, num, ana)                                  \
  do {                                                                                                \
    if (classic) ADD_FAILURE() << model << " " << layer << "." << param << " index " << i << " numeric " \
                               << num << " analytic " << ana;                                         \
  } while (0)

TEST(GradCheck, WholeLeNet5) {
  for (const char* name : {"lenet5", "lenet5-classic"}) {
    const bool classic = std::string(name) == "lenet5-classic";
    int probes = 0, misses = 0;
    Sequential m = build_model(name, true);
    m.init(21);
    Tensor x = kink_free_input({2, 1, 32, 32}, 22);
    uint8_t labels[2] = {4, 7};
    size_t end = m.logits_end();
    auto loss = [&] {
      m.forward(x);
      return softmax_cross_entropy(m.activation(end), labels, nullptr);
    };
    m.forward(x, Sequential::Keep::backward);  // as training runs it
    Tensor d(m.activation(end).shape());
    softmax_cross_entropy(m.activation(end), labels, &d);
    m.zero_grad();
    m.backward(d, end);
    for (size_t li = 0; li < m.size(); ++li)
      for (Param& p : m.layer(li).params()) {
        Tensor ana = *p.grad;
        for (int64_t i = 0; i < p.value->numel(); i += std::max<int64_t>(1, p.value->numel() / 23)) {
          float keep = (*p.value)[i];
          (*p.value)[i] = keep + static_cast<float>(kStep);
          double up = loss();
          (*p.value)[i] = keep - static_cast<float>(kStep);
          double down = loss();
          (*p.value)[i] = keep;
          double num = (up - down) / (2 * kStep);
          bool ok = std::fabs(num - ana[i]) <= 2e-2 * std::max(std::fabs(num), std::fabs(double{ana[i]})) + 1e-3;
          ++probes;
          if (!ok) {
            ++misses;
            ADD_FAILURE_AT_KINK(classic, name, m.name(li), p.name, i, num, ana[i]);
          }
        }
      }
    EXPECT_LE(misses, classic ? 0 : probes / 50) << name << ": " << misses << " of " << probes << " probes off";
  }
}

// Training's forward (Keep::backward: fused conv -> ReLU -> max pool layers keep only the pool
// output and the winning positions) and backward (accumulate = false, no zero_grad) give the same
// logits and gradients, bit for bit, as the forward that keeps every activation and zero_grad +
// an accumulating backward; inputs with exact ties and zeros. Batches 37 and 45 in tiles of 16:
// conv2 runs on lane groups of 16 and 13 images (window codes in lane order) and on GEMMs for
// the last 5.
TEST(SequentialBackward, KeepBackwardGivesTheSameBits) {
  for (int batch : {37, 45})
  for (bool bias : {false, true}) {
    Sequential m = build_model("lenet5", bias);
    m.init(31);
    Rng rng(32);
    Tensor x(Shape{batch, 1, 32, 32});
    for (int64_t i = 0; i < x.numel(); ++i) x[i] = rng.below(4) == 0 ? -1.0f : rng.below(8) == 0 ? 0.25f : rng.uniform(-1, 1);
    std::vector<uint8_t> labels(static_cast<size_t>(batch));
    for (auto& l : labels) l = static_cast<uint8_t>(rng.below(10));
    const size_t end = m.logits_end();
    std::vector<std::vector<float>> grads[2];
    Tensor logits[2];
    for (int mode = 0; mode < 2; ++mode) {
      // The same forward kernels both times (unfrozen weights, as training runs).
      m.forward(x, mode == 0 ? Sequential::Keep::all : Sequential::Keep::backward, /*freeze=*/false);
      logits[mode] = m.activation(end);
      Tensor d(logits[mode].shape());
      softmax_cross_entropy(logits[mode], labels.data(), &d);
      if (mode == 0) m.zero_grad();  // mode 1 replaces the gradients mode 0 left
      m.backward(d, end, /*accumulate=*/mode == 0);
      for (size_t li = 0; li < m.size(); ++li)
        for (Param& p : m.layer(li).params()) grads[mode].emplace_back(p.grad->data(), p.grad->data() + p.grad->numel());
    }
    ASSERT_EQ(0, std::memcmp(logits[0].data(), logits[1].data(), size_t(logits[0].numel()) * sizeof(float)));
    ASSERT_EQ(grads[0].size(), grads[1].size());
    for (size_t k = 0; k < grads[0].size(); ++k)
      ASSERT_EQ(0, std::memcmp(grads[0][k].data(), grads[1][k].data(), grads[0][k].size() * sizeof(float)))
          << "parameter " << k << " bias=" << bias << " batch=" << batch;
  }
}

}  // namespace
}  // namespace lowbit
