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
  void barrier() const;
  void sum_in_place(double* data, std::size_t n) const override;
  // Logical and / max over ranks (for agreeing on an outcome).
  bool all_true(bool local) const;
  long max(long local) const;
  // Rank `root`'s string on every rank.
  std::string broadcast(const std::string& s, int root = 0) const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit Comm(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace eomlab::dist
