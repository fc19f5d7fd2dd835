// Scratch buffers for SIMD kernels: std::vector on 64-byte boundaries, and room() to grow one.
// From malloc a buffer's offset within a cache line depends on the run, and with it whether every
// 64-byte vector straddles two lines (a 2-thread int8 run varied 1.6x from run to run).
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace lowbit {

template <class T>
struct Align64 {
  using value_type = T;
  Align64() = default;
  template <class U>
  Align64(const Align64<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t{64}); }
  bool operator==(const Align64&) const { return true; }
};

template <class T>
using AlignedVector = std::vector<T, Align64<T>>;

// Grows a scratch buffer to at least n elements, never shrinks it, and returns its data: buffers
// reused by layers of different sizes would otherwise zero-fill the difference on every regrowth.
template <class V>
typename V::value_type* room(V& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

}  // namespace lowbit
