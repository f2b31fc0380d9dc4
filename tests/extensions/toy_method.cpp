// A toy method: gradient descent with its step scaled by c = 1/2, θ_{k+1} = θ_k − cη ∇L(θ_k). Its EoM is
// GD's at lr cη on time t = kη: f_j scaled by c^j. Same iterates as GD at lr cη, bit for bit. It
// provides eom0 and eom1 only (so a study asking it for eom2 is bad input).
#include "flow/method.hpp"

namespace toys {

using namespace eomlab;

namespace {

constexpr double multiplier = 0.5;

const CounterTermTable& scaled_table() {
  static const CounterTermTable table = [] {
    CounterTermTable t = counter_term_table();
    t.terms.resize(2);  // f_1, f_2: eom0 and eom1
    double power = 1;
    for (auto& terms : t.terms) {
      power *= multiplier;
      for (CounterTermEntry& e : terms) e.coefficient *= power;
    }
    return t;
  }();
  return table;
}

class HalfStepGd final : public Method {
 public:
  explicit HalfStepGd(const MethodContext& c) : objective_(c.objective), step_(multiplier * c.lr) {}
  std::string name() const override { return "half_step_gd"; }
  void start(const Vector& theta0) override {
    theta_ = theta0;
    evaluate();
  }
  void step() override {
    theta_.noalias() -= step_ * grad_;
    evaluate();
  }
  void next_iterate(Vector& out) const override { out = theta_ - step_ * grad_; }
  const Vector& theta() const override { return theta_; }
  const Vector& gradient() const override { return grad_; }
  double loss() const override { return loss_; }
  long evaluations() const override { return evaluations_; }
  double stable_lr_sharpness() const override { return 2.0 / multiplier; }
  const CounterTermTable& counter_terms() const override { return scaled_table(); }
  MethodState save() const override {
    return {{{"theta", theta_}, {"grad", grad_}}, {{"loss", loss_}, {"evaluations", static_cast<double>(evaluations_)}}};
  }
  void restore(const MethodState& s) override {
    theta_ = s.vectors.at(0).second;
    grad_ = s.vectors.at(1).second;
    loss_ = s.scalars.at(0).second;
    evaluations_ = static_cast<long>(s.scalars.at(1).second);
  }

 private:
  void evaluate() {
    loss_ = objective_.value_and_gradient(theta_, grad_);
    ++evaluations_;
  }
  Objective& objective_;
  double step_;
  Vector theta_, grad_;
  double loss_ = 0;
  long evaluations_ = 0;
};

}  // namespace

std::unique_ptr<Method> make_half_step_gd(const MethodContext& context) { return std::make_unique<HalfStepGd>(context); }

}  // namespace toys
