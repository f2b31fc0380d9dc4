// How numerics see distribution: a Reducer sums arrays across the processes that share a computation
// (data shards, or slices of a vector). Numerics take one by reference and never include mpi.h;
// dist::Comm implements it over MPI, LocalReducer is the single-process identity.
// Invariant: after sum_in_place every participating process holds the same bits.
#pragma once
#include <cstddef>

namespace eomlab {

class Reducer {
 public:
  virtual ~Reducer() = default;
  virtual void sum_in_place(double* data, std::size_t n) const = 0;
  double sum(double x) const {
    sum_in_place(&x, 1);
    return x;
  }
};

class LocalReducer final : public Reducer {
 public:
  void sum_in_place(double*, std::size_t) const override {}
};

}  // namespace eomlab
