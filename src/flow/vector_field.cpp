#include "flow/vector_field.hpp"

namespace eomlab {

VectorField::VectorField(Objective& objective, FlowKind kind, double lr) : terms_(objective, kind.order, lr), kind_(kind) {}

void VectorField::operator()(const Vector& theta, Vector& out) {
  ++evaluations_;
  terms_(theta, out);
}

}  // namespace eomlab
