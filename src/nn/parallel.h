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

// Runs body(thread, nthreads) on up to nthreads OpenMP threads. One thread runs inline: an
// OpenMP parallel region costs about half a microsecond to open and close, a tenth of a batch-1
// integer inference.
template <class Body>
void run_threads(int nthreads, Body body) {
  if (nthreads <= 1) {
    body(0, 1);
    return;
  }
#pragma omp parallel num_threads(nthreads)
  body(omp_get_thread_num(), omp_get_num_threads());
}

}  // namespace lowbit
