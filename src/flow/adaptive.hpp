// RMSProp's start shift (flow/adaptive.cpp, docs/optimizers.md): its eom1 starts from
// θ0* = θ0 − η g0 ⊙ S(|g0|, β2, ε) so that the flow passes through RMSProp's iterates.
#pragma once

namespace eomlab {

// S(a, β, ε) = Σ_{k≥1} [1/(√(1−β^k) a + ε) − 1/(a + ε)] for a ≥ 0, 0 ≤ β < 1, ε ≥ 0 (a + ε > 0), in O(1)
// work for any β. Where at most 4096 terms have β^k > 1e-3 (β ≤ 0.9983) it is summed term by term, as
// earlier versions did, bit for bit; each term is a difference there, so it is accurate to about
// 1e-15·max(1, ε/a) relative. Above, its first terms plus Gregory's formula for the rest: about 1e-15.
double rmsprop_start_sum(double a, double beta, double eps);

}  // namespace eomlab
