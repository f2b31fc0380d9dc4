// The counter terms of the EoM (DESIGN.md §1.2) as one table: f_j is a linear combination of
// elementary differentials built from the gradient g, Hessian products H·x and third-order
// contractions T[x, y], e.g. f_3 = -(1/3) H²g - (1/12) T[g, g]. The field of order p is
//     F_p = f_1 + η f_2 + ... + η^p f_{p+1}.
// Each elementary differential is evaluated once per field evaluation even when several counter
// terms share it (Hg feeds H²g and T[Hg, g]). A higher order is a new row of the table, plus a new
// derivative kind if it needs ∇⁴L.
#pragma once
#include <algorithm>
#include <vector>

#include "diff/objective.hpp"

namespace eomlab {

struct ElementaryDifferential {
  enum class Kind { gradient, hessian, third } kind;
  int x = -1, y = -1;  // operands: indices of earlier differentials
};

struct CounterTermEntry {
  double coefficient;
  int differential;
};

// A method with memory also has start terms: its eomP starts from θ0* = θ0 + Σ_{j=1..P} η^j s_j(θ0).
struct CounterTermTable {
  std::vector<ElementaryDifferential> differentials;  // each operand precedes its user
  std::vector<std::vector<CounterTermEntry>> terms;    // terms[j - 1] = f_j
  bool memory = false;                                 // θ0* ≠ θ0
  std::vector<std::vector<CounterTermEntry>> start;    // start[j] = s_j (start[0] empty); with memory only
  int max_order() const {
    const int field = static_cast<int>(terms.size()) - 1;
    return memory ? std::min(field, static_cast<int>(start.size()) - 1) : field;
  }
};

// GD's f_1 .. f_4: enough for gf and eom1..eom3.
const CounterTermTable& counter_term_table();

// Evaluates F_p(θ) = Σ_{j=0..p} η^j terms[j](θ) into out, with terms the table's f_{j+1} (the field of
// eomp) or its s_j (the start shift θ0* − θ0). The table must outlive it. Keeps its scratch vectors.
class CounterTermEvaluator {
 public:
  enum class Part { field, start };
  CounterTermEvaluator(Objective& objective, const CounterTermTable& table, int order, double lr,
                       Part part = Part::field);
  void operator()(const Vector& theta, Vector& out);

 private:
  Objective& objective_;
  const CounterTermTable& table_;
  const std::vector<std::vector<CounterTermEntry>>& terms_;
  int order_;
  double lr_;
  std::vector<bool> needed_, done_;
  std::vector<int> fused_third_;  // for a needed H x: the index of a needed T[x, x] computed with it, or -1
  std::vector<Vector> values_;
};

}  // namespace eomlab
