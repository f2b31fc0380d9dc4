// RMSProp's start shift (flow/adaptive.cpp, docs/optimizers.md): its eom1 starts from
// θ0* = θ0 − η g0 ⊙ S(|g0|, β2, ε) so that the flow passes through RMSProp's iterates.
#pragma once

namespace eomlab {

// S(a, β, ε) = Σ_{k≥1} [1/(√(1−β^k) a + ε) − 1/(a + ε)] for a ≥ 0, 0 ≤ β < 1, ε ≥ 0 (a + ε > 0), to about
// 1e-15 relative and in O(1) work for any β: summed term by term where that takes at most 4096 terms,
// else its first terms plus Gregory's formula for the rest.
double rmsprop_start_sum(double a, double beta, double eps);

}  // namespace eomlab
