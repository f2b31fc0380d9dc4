#include "flow/vector_field.hpp"

#include "core/error.hpp"

namespace eomlab {

VectorField::VectorField(Objective& objective, FlowKind kind, double lr) : objective_(objective), kind_(kind), lr_(lr) {
  if (kind.order < 0 || kind.order > max_eom_order)
    throw Error("VectorField: flow '" + kind.name() + "' is not implemented");
}

void VectorField::operator()(const Vector& theta, Vector& out) {
  ++evaluations_;
  objective_.value_and_gradient(theta, grad_);
  out = -grad_;
  if (kind_.order >= 1) {
    objective_.hessian_vector(theta, grad_, hg_);
    out.noalias() -= (0.5 * lr_) * hg_;
  }
}

}  // namespace eomlab
