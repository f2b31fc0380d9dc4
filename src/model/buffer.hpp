// A dense column-major matrix whose storage only grows: resizing within its capacity re-points the
// view and keeps the memory. The jet path reuses its temporaries for matrices of many shapes (layers
// of different widths, W-shaped and batch-shaped parts); as Buffers they stop allocating once the
// largest shape has been seen, so field evaluations inside the integrator's loop allocate nothing.
// Like Matrix::resize, growing does not keep the contents. Assigning an expression resizes to it.
#pragma once
#include <memory>
#include <new>
#include <utility>

#include "core/types.hpp"

namespace eomlab {

class Buffer : public Eigen::Map<Matrix> {
  using Base = Eigen::Map<Matrix>;

 public:
  Buffer() : Base(nullptr, 0, 0) {}
  Buffer(const Buffer& other) : Base(nullptr, 0, 0) { *this = other; }
  Buffer(Buffer&& other) noexcept : Base(nullptr, 0, 0) { swap(other); }
  ~Buffer() = default;
  Buffer& operator=(const Buffer& other) {
    if (this != &other) {
      resize(other.rows(), other.cols());
      Base::operator=(other);
    }
    return *this;
  }
  Buffer& operator=(Buffer&& other) noexcept {
    swap(other);
    return *this;
  }
  template <class Expression>
  Buffer& operator=(const Eigen::DenseBase<Expression>& e) {
    resize(e.rows(), e.cols());
    Base::operator=(e.derived());
    return *this;
  }

  void resize(Index rows, Index cols) {
    const Index n = rows * cols;
    if (n > capacity_) {
      storage_.reset(static_cast<double*>(Eigen::internal::aligned_malloc(static_cast<std::size_t>(n) * sizeof(double))));
      capacity_ = n;
    }
    view(rows, cols);
  }
  void swap(Buffer& other) noexcept {
    std::swap(storage_, other.storage_);
    std::swap(capacity_, other.capacity_);
    const Index r = rows(), c = cols();
    view(other.rows(), other.cols());
    other.view(r, c);
  }

 private:
  struct Free {
    void operator()(double* p) const { Eigen::internal::aligned_free(p); }
  };
  std::unique_ptr<double, Free> storage_;
  Index capacity_ = 0;

  // Re-points the Map base at the storage (the placement-new idiom Eigen documents for Maps).
  void view(Index rows, Index cols) { new (static_cast<Base*>(this)) Base(storage_.get(), rows, cols); }
};

// to[0, n) = from[0, n), with the destination's cache lines written without being read first
// (non-temporal stores, where the build targets AVX): for a large array that is written once and read
// back only much later, as a forward pass's kept σ' is in its backward pass. Same bits as std::copy.
// The stores are ordered for this thread only: another thread would need the caller to fence first.
void copy_streaming(const double* from, Index n, double* to);

}  // namespace eomlab
