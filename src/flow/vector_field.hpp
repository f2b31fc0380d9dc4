// The right-hand side of each continuous model of GD (DESIGN.md §1.2): gf is dθ/dt = -g, eomP is
// dθ/dt = f_1 + η f_2 + ... + η^P f_{P+1} with the counter terms of flow/counter_terms.hpp.
// Each call counts as one field evaluation.
#pragma once
#include "core/config.hpp"
#include "flow/counter_terms.hpp"

namespace eomlab {

class VectorField {
 public:
  VectorField(Objective& objective, FlowKind kind, double lr);
  void operator()(const Vector& theta, Vector& out);
  long evaluations() const { return evaluations_; }
  void set_evaluations(long n) { evaluations_ = n; }
  FlowKind kind() const { return kind_; }

 private:
  CounterTermEvaluator terms_;
  FlowKind kind_;
  long evaluations_ = 0;
};

}  // namespace eomlab
