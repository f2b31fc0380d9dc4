// Central finite differences of an Objective: the reference the exact derivatives are tested against.
// Tests only: production code uses exact derivatives.
#pragma once
#include "diff/objective.hpp"

namespace eomlab::test {

// Gradient by central differences of the value, one coordinate at a time.
inline Vector fd_gradient(Objective& f, const Vector& theta, double h = 1e-5) {
  Vector g(theta.size()), t = theta;
  for (Index i = 0; i < theta.size(); ++i) {
    t[i] = theta[i] + h;
    const double up = f.value(t);
    t[i] = theta[i] - h;
    const double down = f.value(t);
    t[i] = theta[i];
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

// Hessian-vector product by central differences of the exact gradient along v.
inline Vector fd_hessian_vector(Objective& f, const Vector& theta, const Vector& v, double h = 1e-5) {
  Vector gp, gm;
  f.value_and_gradient(theta + h * v, gp);
  f.value_and_gradient(theta - h * v, gm);
  return (gp - gm) / (2 * h);
}

// T[u, v] by central differences of the exact HVP along u.
inline Vector fd_third_order(Objective& f, const Vector& theta, const Vector& u, const Vector& v, double h = 1e-5) {
  Vector hp, hm;
  f.hessian_vector(theta + h * u, v, hp);
  f.hessian_vector(theta - h * u, v, hm);
  return (hp - hm) / (2 * h);
}

inline double relative_error(const Vector& a, const Vector& reference) {
  return (a - reference).norm() / reference.norm();
}

}  // namespace eomlab::test
