// The modified equation of a discrete method, derived by order-by-order matching (DESIGN.md §1.2, §1.5):
// the one derivation behind the counter-term tables of heavy ball and Nesterov (and, as a check, GD).
//
// A method here is a linear recurrence in its iterates and gradients,
//     Σ_i a_i θ_{k+i} = η Σ_i b_i f(θ_{k+i}),   f = −g,   i ∈ {−1, 0, 1}, b_1 = 0,
// whose second iterate is θ_1 = θ_0 + d·η f(θ_0) (a method with memory starting from rest). Its flow
// dθ/dt = F_1 + η F_2 + … is found with vector fields written as combinations of rooted trees of f
// (elementary differentials: • = f, [τ] = f'F(τ), [τ, σ] = f''(F(τ), F(σ)), …): Taylor expansion of
// θ(t + iη) and f(θ(t + iη)) along the flow is grafting, and the terms of η^q are the trees of q nodes,
// so F_q follows from the lower orders.
// The start θ0* = θ0 + η s_1 + η² s_2 + … puts the flow on the discrete trajectory's slow solution. s_1 and
// s_2 are multiples of the only trees of one and two nodes (f, f'f); their coefficients are those of the
// slow root's amplitude of the scalar problem f(θ) = λθ, in powers of z = ηλ. From s_3 on there are
// several trees per order and the scalar problem does not tell them apart, so the start (and with it the
// table) ends at order 2 for methods with memory.
#pragma once
#include <utility>
#include <vector>

#include "flow/counter_terms.hpp"

namespace eomlab {

struct LinearRecurrence {
  std::vector<std::pair<int, double>> a;  // (offset i, a_i): coefficients of θ_{k+i}
  std::vector<std::pair<int, double>> b;  // (offset i, b_i): coefficients of η f(θ_{k+i})
  bool memory = false;                    // a two-step method: needs θ0* (else θ0* = θ0)
  double first_step = 1;                  // d in θ_1 = θ_0 + d·η f(θ_0) (methods with memory)
};

// The counter-term table of F_1 .. F_{max_order+1} (written with g, H and T, dropping from the first order
// that needs ∇⁴L) and, for a method with memory, the start terms s_1, s_2.
CounterTermTable derive_counter_terms(const LinearRecurrence& method, int max_order);

// derive_counter_terms(method, 3), made once per recurrence and kept for the program's life (flows keep
// a reference to their table). Thread-safe.
const CounterTermTable& cached_counter_terms(const LinearRecurrence& method);

// The recurrences of DESIGN.md §1.5.
LinearRecurrence gradient_descent_recurrence();
LinearRecurrence heavy_ball_recurrence(double beta);
LinearRecurrence nesterov_recurrence(double beta);

}  // namespace eomlab
