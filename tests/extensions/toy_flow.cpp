// A toy flow: gradient flow at half speed, dθ/dt = −g/2 (the leading model of half_step_gd, so the same
// field as that method's eom0, evaluated by other code).
#include "flow/flow.hpp"

namespace toys {

using namespace eomlab;

namespace {

class HalfSpeedGradientFlow final : public Flow {
 public:
  explicit HalfSpeedGradientFlow(Objective& objective) : objective_(objective) {}

 protected:
  void field(const Vector& theta, Vector& out) override {
    objective_.value_and_gradient(theta, grad_);
    out = -0.5 * grad_;
  }

 private:
  Objective& objective_;
  Vector grad_;
};

}  // namespace

std::unique_ptr<Flow> make_half_speed_gf(const FlowContext& c) { return std::make_unique<HalfSpeedGradientFlow>(c.objective); }

}  // namespace toys
