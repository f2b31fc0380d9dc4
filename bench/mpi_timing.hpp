// Timing for the MPI benchmarks: median wall time of `repeats` calls (after two warm-ups), each
// bracketed by barriers so every rank's share is included.
#pragma once
#include <algorithm>
#include <chrono>
#include <vector>

#include "dist/comm.hpp"

namespace eomlab::bench {

template <class F>
double median_seconds(const dist::Comm& comm, int repeats, F&& evaluate) {
  std::vector<double> t;
  for (int r = 0; r < repeats + 2; ++r) {
    comm.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    evaluate();
    comm.barrier();
    if (r >= 2) t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace eomlab::bench
