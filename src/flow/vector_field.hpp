// The right-hand sides of the continuous models of GD (DESIGN.md §1.2):
//   gf:   dθ/dt = -g
//   eom1: dθ/dt = -g - (η/2) H g
// The counter terms f_j are built from exact derivatives of the Objective. Each call counts as one
// field evaluation.
#pragma once
#include "core/config.hpp"
#include "diff/objective.hpp"

namespace eomlab {

// Highest EoM order implemented.
inline constexpr int max_eom_order = 1;

class VectorField {
 public:
  VectorField(Objective& objective, FlowKind kind, double lr);
  void operator()(const Vector& theta, Vector& out);
  long evaluations() const { return evaluations_; }
  FlowKind kind() const { return kind_; }

 private:
  Objective& objective_;
  FlowKind kind_;
  double lr_;
  long evaluations_ = 0;
  Vector grad_, hg_;
};

}  // namespace eomlab
