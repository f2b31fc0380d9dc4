// A toy observable: Σ_i θ_i, one number per record on every trajectory (named in output.observables).
#include "flow/observable.hpp"

namespace toys {

using namespace eomlab;

namespace {

class ThetaSum final : public Observable {
 public:
  std::string name() const override { return "theta_sum"; }
  void local_sums(const ObservationPoint& p, double* sums) const override { sums[0] = p.theta.sum(); }
};

}  // namespace

Observables make_theta_sum(const ObservableSetup&, TrajectoryRole) {
  Observables out;
  out.push_back(std::make_unique<ThetaSum>());
  return out;
}

}  // namespace toys
