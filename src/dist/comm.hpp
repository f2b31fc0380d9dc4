// MPI behind a small value type. Only src/dist includes mpi.h.
// Environment initialises and finalises MPI (RAII, one per process). Comm is a communicator; a Comm
// made by split() owns its MPI communicator and frees it when the last copy goes. Every MPI return
// code is checked in one place and turned into an eomlab::Error naming the call.
// Comm is a Reducer: sum_in_place is an allreduce over the communicator, identical on every rank.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/reducer.hpp"
#include "core/slices.hpp"

namespace eomlab::dist {

class Environment {
 public:
  Environment(int& argc, char**& argv);
  ~Environment();
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;
  // Ends every process of the job; for errors that hit only some ranks.
  [[noreturn]] static void abort(int code);
  static std::string library_version();
};

class Comm final : public Reducer {
 public:
  static Comm world();
  int rank() const;
  int size() const;
  Comm split(int color, int key) const;
  // The ranks of this communicator on this rank's node (sharing its memory).
  Comm node() const;
  void barrier() const;
  void sum_in_place(double* data, std::size_t n) const override;
  // Logical and / max over ranks (for agreeing on an outcome).
  bool all_true(bool local) const;
  long max(long local) const;
  double maximum(double local) const;
  // Rank `root`'s string on every rank.
  std::string broadcast(const std::string& s, int root = 0) const;
  // out = every rank's `counts[rank]` doubles, each at `displacements[rank]`.
  void all_gather(const double* local, double* out, const std::vector<int>& counts,
                  const std::vector<int>& displacements) const;
  // out (counts[rank] doubles) = this rank's block of the elementwise sum of every rank's `in`.
  void reduce_scatter(const double* in, double* out, const std::vector<int>& counts) const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit Comm(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

// The slices of one run's vectors over the ranks of `comm` (see core/slices.hpp).
class SlicedVectors final : public SliceExchange {
 public:
  SlicedVectors(Comm comm, Index global_size);
  Index global_size() const override { return n_; }
  Index begin() const override { return begin_; }
  Index end() const override { return end_; }
  void sum_in_place(double* data, std::size_t n) const override { comm_.sum_in_place(data, n); }
  void all_gather(const Vector& slice, Vector& whole) const override;
  void reduce_scatter(Vector& whole, Vector& slice) const override;
  std::uint64_t bytes_sent() const override { return bytes_; }

 private:
  Comm comm_;
  Index n_, begin_, end_;
  std::vector<int> counts_, displacements_;  // per rank, computed once: no allocation per exchange
  mutable std::uint64_t bytes_ = 0;
};

}  // namespace eomlab::dist
