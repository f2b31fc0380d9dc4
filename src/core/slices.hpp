// How the parameter-length vectors of one run are spread over its ranks ("ranks own slices",
// DESIGN.md §2.3): rank i owns the contiguous slice [begin, end) of θ, of the GD state and of every
// integrator stage. Numerics work on slices; a derivative evaluation all-gathers its input vectors,
// computes on the local data shard, and reduce-scatters the result so each rank gets its slice.
// As a Reducer it sums over the run's ranks (dot products and norms of slices).
// Invariant: the slices of all ranks tile [0, global_size) in rank order.
#pragma once
#include <cstdint>

#include "core/reducer.hpp"
#include "core/types.hpp"

namespace eomlab {

class SliceExchange : public Reducer {
 public:
  virtual Index global_size() const = 0;
  virtual Index begin() const = 0;
  virtual Index end() const = 0;
  Index local_size() const { return end() - begin(); }
  // whole (global_size) = the slices of every rank, in order.
  virtual void all_gather(const Vector& slice, Vector& whole) const = 0;
  // slice = this rank's part of Σ_ranks whole. `whole` may be clobbered.
  virtual void reduce_scatter(Vector& whole, Vector& slice) const = 0;
  // Logical bytes this rank has sent in all_gather and reduce_scatter (a ring algorithm's volume).
  virtual std::uint64_t bytes_sent() const = 0;
};

// A single rank owning everything: gather and scatter are copies.
class WholeVector final : public SliceExchange {
 public:
  explicit WholeVector(Index n) : n_(n) {}
  Index global_size() const override { return n_; }
  Index begin() const override { return 0; }
  Index end() const override { return n_; }
  void sum_in_place(double*, std::size_t) const override {}
  void all_gather(const Vector& slice, Vector& whole) const override { whole = slice; }
  void reduce_scatter(Vector& whole, Vector& slice) const override { slice.swap(whole); }
  std::uint64_t bytes_sent() const override { return 0; }

 private:
  Index n_;
};

// The slice of rank `rank` among `ranks` for a vector of length n: sizes differ by at most one.
inline Index slice_begin(Index n, int rank, int ranks) { return n * rank / ranks; }

}  // namespace eomlab
