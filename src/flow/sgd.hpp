// Minibatch SGD (DESIGN.md §1.5, §3.7): what tests and tools need to know of its batches.
//
// The data set's N samples are visited in the order of a permutation drawn from the run's seed and cut
// into m = N/b consecutive batches of b samples (as torch's DataLoader(shuffle=True, batch_size=b)
// does): batch j of an epoch holds the samples perm[j·b], …, perm[(j+1)·b − 1]. `order = fixed` uses
// the permutation of epoch 0 in every epoch; `reshuffle` draws epoch e's permutation from its own stream.
// A permutation is Fisher–Yates (i = N−1 down to 1: swap p[i] with p[j], j = Rng::below(i+1)) on the
// identity, with Rng(seed, sgd_epoch_stream + e): the same numbers on every platform and rank count.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/config.hpp"
#include "diff/objective.hpp"

namespace eomlab {

inline constexpr std::uint64_t sgd_epoch_stream = 0x5347440000000000ULL;  // + the epoch ("SGD")

// The permutation of 0..n−1 of epoch `epoch` (reshuffle; fixed uses epoch 0's every epoch).
std::vector<Index> sgd_permutation(std::uint64_t seed, long epoch, Index n);

// The batches of one epoch of a loss over samples: m objectives, batch j the loss over its b samples
// (each rank keeps the samples of its shard, so the shards of a run split each batch), as one
// BatchPartition (diff/objective.hpp). They are made when an epoch with another permutation is selected
// and share `full`'s buffers.
class SgdBatches {
 public:
  // Throws InputError naming optimizer.batch_size unless b > 0 divides full.samples().
  SgdBatches(Objective& full, long batch_size, std::uint64_t seed, BatchOrder order);
  long count() const { return m_; }
  // The permutation of epoch `epoch` (fixed: always epoch 0's); makes its batches if they are not made.
  void select_epoch(long epoch);
  Objective& batch(long j) { return partition_->batch(j); }
  BatchPartition& partition() { return *partition_; }
  const std::vector<Index>& permutation() const { return permutation_; }
  long selected() const { return selected_; }  // the permutation's epoch (fixed: 0), −1 before any

 private:
  Objective& full_;
  long b_, m_;
  std::uint64_t seed_;
  BatchOrder order_;
  long selected_ = -1;
  std::vector<Index> permutation_;
  std::unique_ptr<BatchPartition> partition_;
};

// sgd's eom1 field −ḡ + η F1 for batches in the order they run (DESIGN.md §1.5), F1 = (1/m) Σ_j H_j u_j
// with u_j = Σ_{i<j} g_i − (m/2) ḡ: the partition's own prefix_direction_sum where it has one, else the m
// batch gradients (BatchPartition), which become the u_j in place, then Σ_j H_j u_j.
class SgdEom1Field {
 public:
  void operator()(BatchPartition& batches, double lr, const Vector& theta, Vector& out);

 private:
  std::vector<Vector> g_;
  std::vector<const Vector*> u_;
  Vector mean_, running_;
  void directions_in_place();
};

// A 53-bit fingerprint of a permutation (FNV-1a folded), stored in checkpoints to check that the order
// regenerated from the seed on resume is the one the run used.
double permutation_fingerprint(const std::vector<Index>& permutation);

}  // namespace eomlab
