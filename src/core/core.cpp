#include "lowbit/core.h"

#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

namespace lowbit {

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int d : s) n *= d;
  return n;
}

void AlignedFree::operator()(float* p) const { std::free(p); }

// n floats plus Tensor::kSlack zeroed ones.
static std::unique_ptr<float[], AlignedFree> alloc_floats(int64_t n) {
  size_t bytes = (static_cast<size_t>(n + Tensor::kSlack) * sizeof(float) + 63) / 64 * 64;
  auto* p = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (!p) throw Error("out of memory allocating " + std::to_string(bytes) + " bytes");
  std::memset(p + n, 0, static_cast<size_t>(Tensor::kSlack) * sizeof(float));
  return std::unique_ptr<float[], AlignedFree>(p);
}

Tensor::Tensor(Shape shape) { resize(shape); zero(); }

Tensor::Tensor(const Tensor& other) { *this = other; }

Tensor& Tensor::operator=(const Tensor& other) {
  if (this == &other) return *this;
  resize(other.shape_);
  if (numel_) std::memcpy(data_.get(), other.data_.get(), static_cast<size_t>(numel_) * sizeof(float));
  return *this;
}

void Tensor::resize(const Shape& shape) {
  for (int d : shape)
    if (d < 0) throw Error("negative tensor dimension in " + shape_str(shape));
  shape_ = shape;
  numel_ = shape_numel(shape);
  if (numel_ > capacity_ || !data_) {
    data_ = alloc_floats(numel_);
    capacity_ = numel_;
  }
}

void Tensor::zero() {
  if (numel_) std::memset(data_.get(), 0, static_cast<size_t>(numel_) * sizeof(float));
}

static uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

Rng::Rng(uint64_t seed) {
  for (auto& s : s_) s = splitmix64(seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t Rng::next() {
  uint64_t result = rotl(s_[1] * 5, 7) * 9;
  uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

float Rng::uniform(float lo, float hi) { return lo + static_cast<float>(uniform()) * (hi - lo); }

double Rng::normal() {
  double u1 = uniform(), u2 = uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

uint64_t Rng::below(uint64_t n) {
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = next();
  while (x >= limit);
  return x % n;
}

static int g_threads = 0;

void set_threads(int n) {
  if (n < 0) throw Error("--threads must be >= 0, got " + std::to_string(n));
  g_threads = n > 0 ? n : omp_get_num_procs();
  omp_set_num_threads(g_threads);
}

int threads() { return g_threads > 0 ? g_threads : omp_get_max_threads(); }

}  // namespace lowbit
