// Core types shared by every module: errors, shapes, float tensors, a seeded RNG.
// Not here: anything that knows about layers, quantization or files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace lowbit {

// Every user-facing failure (bad file, bad flag, bad shape) is an Error whose message names the
// file, field or flag at fault. The CLI prints it and exits non-zero.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

using Shape = std::vector<int>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

// 64-byte aligned float storage, so SIMD kernels may use aligned loads on whole rows.
struct AlignedFree {
  void operator()(float* p) const;
};

// A dense row-major float tensor. Owns its storage; copyable.
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape);  // zero-filled
  Tensor(const Tensor& other);
  Tensor& operator=(const Tensor& other);
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;

  // Past the last element the storage holds kSlack more floats (zero when allocated, finite
  // always), so SIMD kernels may load whole vectors across the end (Conv2d's row-pointer GEMM).
  static constexpr int kSlack = 32;

  // Reshape-in-place to a new shape, reallocating only when the element count grows.
  // Contents are unspecified after a size change.
  void resize(const Shape& shape);
  void zero();

  const Shape& shape() const { return shape_; }
  int dim(int i) const { return shape_[static_cast<size_t>(i < 0 ? i + (int)shape_.size() : i)]; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const { return numel_; }
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  float& operator[](int64_t i) { return data_.get()[i]; }
  float operator[](int64_t i) const { return data_.get()[i]; }

 private:
  Shape shape_;
  int64_t numel_ = 0;
  int64_t capacity_ = 0;
  std::unique_ptr<float[], AlignedFree> data_;
};

// splitmix64-seeded xoshiro256**: fast, portable and identical on every platform, unlike
// std::normal_distribution whose output differs between standard libraries.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();                     // [0, 1)
  float uniform(float lo, float hi);    // [lo, hi)
  double normal();                      // N(0, 1), Box-Muller
  uint64_t below(uint64_t n);           // [0, n), unbiased
  template <class T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }

 private:
  uint64_t s_[4];
};

// Thread count used by OpenMP regions; 0 means "all cores". Results depend only on the seed and
// this number (reductions are done per thread slice, then summed in a fixed order).
void set_threads(int n);
int threads();

}  // namespace lowbit
