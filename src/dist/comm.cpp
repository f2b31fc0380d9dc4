#include "dist/comm.hpp"

#include <mpi.h>

#include "core/error.hpp"
#include "dist/native.hpp"

namespace eomlab::dist {
namespace {

void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw Error(std::string(call) + " failed: " + std::string(text, static_cast<std::size_t>(len)));
}

}  // namespace

struct Comm::Impl {
  MPI_Comm comm = MPI_COMM_NULL;
  bool owned = false;
  ~Impl() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owned && !finalized) MPI_Comm_free(&comm);
  }
};

MPI_Comm native_handle(const Comm& comm) { return comm.impl().comm; }

Environment::Environment(int& argc, char**& argv) {
  int provided = 0;
  check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

Environment::~Environment() { MPI_Finalize(); }

void Environment::abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::abort();
}

std::string Environment::library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  check(MPI_Get_library_version(text, &len), "MPI_Get_library_version");
  std::string s(text, static_cast<std::size_t>(len));
  const auto nl = s.find_first_of("\n,");
  return nl == std::string::npos ? s : s.substr(0, nl);
}

Comm Comm::world() {
  auto impl = std::make_shared<Impl>();
  impl->comm = MPI_COMM_WORLD;
  return Comm(impl);
}

int Comm::rank() const {
  int r = 0;
  check(MPI_Comm_rank(impl_->comm, &r), "MPI_Comm_rank");
  return r;
}

int Comm::size() const {
  int s = 0;
  check(MPI_Comm_size(impl_->comm, &s), "MPI_Comm_size");
  return s;
}

Comm Comm::split(int color, int key) const {
  auto impl = std::make_shared<Impl>();
  check(MPI_Comm_split(impl_->comm, color, key, &impl->comm), "MPI_Comm_split");
  impl->owned = true;
  MPI_Comm_set_errhandler(impl->comm, MPI_ERRORS_RETURN);
  return Comm(impl);
}

Comm Comm::node() const {
  auto impl = std::make_shared<Impl>();
  check(MPI_Comm_split_type(impl_->comm, MPI_COMM_TYPE_SHARED, rank(), MPI_INFO_NULL, &impl->comm),
        "MPI_Comm_split_type");
  impl->owned = true;
  MPI_Comm_set_errhandler(impl->comm, MPI_ERRORS_RETURN);
  return Comm(impl);
}

void Comm::barrier() const { check(MPI_Barrier(impl_->comm), "MPI_Barrier"); }

void Comm::sum_in_place(double* data, std::size_t n) const {
  if (n == 0 || size() == 1) return;
  check(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_DOUBLE, MPI_SUM, impl_->comm), "MPI_Allreduce");
}

bool Comm::all_true(bool local) const {
  int v = local ? 1 : 0;
  check(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_LAND, impl_->comm), "MPI_Allreduce(land)");
  return v != 0;
}

long Comm::max(long local) const {
  check(MPI_Allreduce(MPI_IN_PLACE, &local, 1, MPI_LONG, MPI_MAX, impl_->comm), "MPI_Allreduce(max)");
  return local;
}

double Comm::maximum(double local) const {
  check(MPI_Allreduce(MPI_IN_PLACE, &local, 1, MPI_DOUBLE, MPI_MAX, impl_->comm), "MPI_Allreduce(maximum)");
  return local;
}

std::string Comm::broadcast(const std::string& s, int root) const {
  unsigned long len = s.size();
  check(MPI_Bcast(&len, 1, MPI_UNSIGNED_LONG, root, impl_->comm), "MPI_Bcast(length)");
  std::string out = rank() == root ? s : std::string(len, '\0');
  if (len > 0) check(MPI_Bcast(out.data(), static_cast<int>(len), MPI_CHAR, root, impl_->comm), "MPI_Bcast(string)");
  return out;
}

void Comm::all_gather(const double* local, double* out, const std::vector<int>& counts,
                      const std::vector<int>& displacements) const {
  check(MPI_Allgatherv(local, counts[static_cast<std::size_t>(rank())], MPI_DOUBLE, out, counts.data(), displacements.data(),
                       MPI_DOUBLE, impl_->comm),
        "MPI_Allgatherv");
}

void Comm::reduce_scatter(const double* in, double* out, const std::vector<int>& counts) const {
  check(MPI_Reduce_scatter(in, out, counts.data(), MPI_DOUBLE, MPI_SUM, impl_->comm), "MPI_Reduce_scatter");
}

SlicedVectors::SlicedVectors(Comm comm, Index global_size) : comm_(std::move(comm)), n_(global_size) {
  const int r = comm_.size(), me = comm_.rank();
  begin_ = slice_begin(n_, me, r);
  end_ = slice_begin(n_, me + 1, r);
  for (int i = 0; i < r; ++i) {
    counts_.push_back(static_cast<int>(slice_begin(n_, i + 1, r) - slice_begin(n_, i, r)));
    displacements_.push_back(static_cast<int>(slice_begin(n_, i, r)));
  }
}

void SlicedVectors::all_gather(const Vector& slice, Vector& whole) const {
  whole.resize(n_);
  if (counts_.size() == 1) {
    whole = slice;
    return;
  }
  comm_.all_gather(slice.data(), whole.data(), counts_, displacements_);
  bytes_ += sizeof(double) * static_cast<std::uint64_t>(slice.size()) * (counts_.size() - 1);
}

void SlicedVectors::reduce_scatter(Vector& whole, Vector& slice) const {
  if (counts_.size() == 1) {
    slice.swap(whole);
    return;
  }
  slice.resize(end_ - begin_);
  comm_.reduce_scatter(whole.data(), slice.data(), counts_);
  bytes_ += sizeof(double) * static_cast<std::uint64_t>(n_ - (end_ - begin_));
}

}  // namespace eomlab::dist
