// Gradient descent θ_{k+1} = θ_k − η ∇L(θ_k) (DESIGN.md §1.1): the method of the EoM paper. Its
// continuous models are the counter-term table of §1.2; it is stable while lr·λ_max < 2.
#include "flow/method.hpp"

namespace eomlab {
namespace {

class GradientDescent final : public Method {
 public:
  explicit GradientDescent(const MethodContext& c) : objective_(c.objective), lr_(c.lr) {}
  std::string name() const override { return "gd"; }
  void start(const Vector& theta0) override {
    theta_ = theta0;
    evaluate();
  }
  void step() override {
    theta_.noalias() -= lr_ * grad_;
    evaluate();
  }
  void next_iterate(Vector& out) const override { out = theta_ - lr_ * grad_; }
  const Vector& theta() const override { return theta_; }
  const Vector& gradient() const override { return grad_; }
  double loss() const override { return loss_; }
  long evaluations() const override { return evaluations_; }
  double stable_lr_sharpness() const override { return 2.0; }
  const CounterTermTable& counter_terms() const override { return counter_term_table(); }
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
  double lr_;
  Vector theta_, grad_;
  double loss_ = 0;
  long evaluations_ = 0;
};

}  // namespace

std::unique_ptr<Method> make_gradient_descent(const MethodContext& context) {
  return std::make_unique<GradientDescent>(context);
}

}  // namespace eomlab
