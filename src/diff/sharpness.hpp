// The sharpness λ_max(∇²L(θ)): the largest (algebraic) Hessian eigenvalue, by Lanczos iteration on
// exact HVPs with full reorthogonalization. Warm-started from the previous top Ritz vector, it usually
// converges in a few HVPs along a trajectory. Dot products go through `vector_reducer` so a vector
// sliced over ranks gives the same answer on every rank.
#pragma once
#include "core/reducer.hpp"
#include "diff/objective.hpp"

namespace eomlab {

struct SharpnessResult {
  double value = 0;
  int iterations = 0;
  bool converged = false;
};

class SharpnessEstimator {
 public:
  // Stops when the residual of the top Ritz pair is below rtol·|λ| or after max_iterations HVPs.
  SharpnessEstimator(int max_iterations = 30, double rtol = 1e-8);
  SharpnessResult operator()(Objective& objective, const Vector& theta, const Reducer& vector_reducer);
  // The warm start carried from call to call (part of a run's checkpoint).
  const Vector& warm_start() const { return start_; }
  void set_warm_start(const Vector& v) { start_ = v; }

 private:
  int max_iterations_;
  double rtol_;
  Vector start_;  // top Ritz vector of the last call
  std::vector<Vector> basis_;
  Vector w_;
};

}  // namespace eomlab
