// Static partition of a batch across OpenMP threads: thread t of T gets [begin, end). Fixed by
// (n, T) alone, so per-thread partial sums are reduced in the same order on every run.
#pragma once

#include <omp.h>

namespace lowbit {

struct Slice {
  int begin, end;
};

inline Slice thread_slice(int n, int t, int nthreads) {
  return {static_cast<int>(int64_t{n} * t / nthreads), static_cast<int>(int64_t{n} * (t + 1) / nthreads)};
}

}  // namespace lowbit
