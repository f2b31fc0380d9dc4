// Gradient descent θ_{k+1} = θ_k − η ∇L(θ_k) (DESIGN.md §1.1): the method of the EoM paper. Its
// continuous models are the counter-term table of §1.2; it is stable while lr·λ_max < 2.
#include "flow/method.hpp"

namespace eomlab {
namespace {

class GradientDescent final : public GradientMethod {
 public:
  explicit GradientDescent(const MethodContext& c) : GradientMethod(c.objective), lr_(c.lr) {}
  std::string name() const override { return "gd"; }
  std::string label() const override { return "GD"; }
  void start(const Vector& theta0) override {
    theta_ = theta0;
    evaluate();
  }
  void step() override {
    theta_.noalias() -= lr_ * grad_;
    evaluate();
  }
  void next_iterate(Vector& out) const override { out = theta_ - lr_ * grad_; }
  double stable_lr_sharpness() const override { return 2.0; }
  const CounterTermTable& counter_terms() const override { return counter_term_table(); }
  MethodState save() const override { return state(); }
  void restore(const MethodState& s) override { restore_iterate(s); }

 private:
  double lr_;
};

}  // namespace

std::unique_ptr<Method> make_gradient_descent(const MethodContext& context) {
  return std::make_unique<GradientDescent>(context);
}

}  // namespace eomlab
