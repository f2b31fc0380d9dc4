// Toy flows: gradient flow at a fixed speed c, dθ/dt = −c·g. At c = 1/2 it is the leading model of
// half_step_gd (the same field as that method's eom0, evaluated by other code); the speeds 1/4 and 2
// make a family of flows registered under names of their own (a study may integrate many flows).
#include "flow/flow.hpp"

namespace toys {

using namespace eomlab;

namespace {

class ScaledGradientFlow final : public Flow {
 public:
  ScaledGradientFlow(Objective& objective, double speed) : objective_(objective), speed_(speed) {}

 protected:
  void field(const Vector& theta, Vector& out) override {
    objective_.value_and_gradient(theta, grad_);
    out = -speed_ * grad_;
  }

 private:
  Objective& objective_;
  double speed_;
  Vector grad_;
};

}  // namespace

std::unique_ptr<Flow> make_half_speed_gf(const FlowContext& c) { return std::make_unique<ScaledGradientFlow>(c.objective, 0.5); }
std::unique_ptr<Flow> make_quarter_speed_gf(const FlowContext& c) {
  return std::make_unique<ScaledGradientFlow>(c.objective, 0.25);
}
std::unique_ptr<Flow> make_double_speed_gf(const FlowContext& c) { return std::make_unique<ScaledGradientFlow>(c.objective, 2.0); }

}  // namespace toys
