// The sharpness λ_max(∇²L(θ)): the largest (algebraic) Hessian eigenvalue, by Lanczos iteration on
// exact HVPs with full reorthogonalization. The first call starts from a seeded random vector whose
// entries depend only on their global index (the same bits for every rank count; a fixed vector such
// as all ones can be an exact eigenvector, e.g. a null direction of a normalized network, and stop
// Lanczos at the wrong eigenvalue). Later calls start from the previous top Ritz vector, so they usually
// converge in a few HVPs along a trajectory. Vectors are this rank's slices of `slices`; dot products
// are reduced over the run, so every rank gets the same answer.
#pragma once
#include <functional>

#include "core/slices.hpp"
#include "diff/objective.hpp"

namespace eomlab {

struct SharpnessResult {
  double value = 0;
  int iterations = 0;
  bool converged = false;
  bool interrupted = false;  // `interrupt` said stop: no value, and the warm start is unchanged
};

class SharpnessEstimator {
 public:
  // Stops when the residual of the top Ritz pair is below rtol·|λ| or after max_iterations HVPs.
  SharpnessEstimator(int max_iterations = 30, double rtol = 1e-8);
  // `interrupt`, asked before every HVP, may end the estimate early (result.interrupted). With `scale`
  // (this rank's slice of a positive s), the top eigenvalue of S H S, S = diag(s) instead: for
  // s = P^(-1/2), the preconditioned sharpness λ_max(P⁻¹H) (the same spectrum).
  SharpnessResult operator()(Objective& objective, const Vector& theta, const SliceExchange& slices,
                             const std::function<bool()>& interrupt = {}, const Vector* scale = nullptr);
  // The warm start carried from call to call (part of a run's checkpoint).
  const Vector& warm_start() const { return start_; }
  void set_warm_start(const Vector& v) { start_ = v; }

 private:
  Vector start_vector(const SliceExchange& slices);

  int max_iterations_;
  double rtol_;
  Vector start_;  // top Ritz vector of the last call
  std::vector<Vector> basis_;
  Vector w_, scaled_;
};

// This rank's slice [begin, begin + size) of a pseudo-random vector with entries uniform in [-1, 1),
// entry i a function of i and the seed only.
Vector seeded_random_slice(Index begin, Index size, std::uint64_t seed);

}  // namespace eomlab
