// A toy method with a hyperparameter: momentum as an exponential average of the gradients,
// v ← βv + (1 − β)g, θ ← θ − ηv (v from 0), with β the [optimizer] key momentum that its registration
// says it reads (default 0.5 here). It is heavy ball at lr (1 − β)η up to rounding. It declares no
// continuous models of its own, so a study of it integrates registered flows such as gf.
#include "flow/method.hpp"

namespace toys {

using namespace eomlab;

namespace {

class EmaMomentumGd final : public GradientMethod {
 public:
  explicit EmaMomentumGd(const MethodContext& c) : GradientMethod(c.objective), lr_(c.lr), beta_(c.settings.momentum) {}
  std::string name() const override { return "ema_momentum_gd"; }
  void start(const Vector& theta0) override {
    theta_ = theta0;
    velocity_.setZero(theta0.size());
    evaluate();
  }
  void step() override {
    next_velocity(velocity_);
    theta_.noalias() -= lr_ * velocity_;
    evaluate();
  }
  void next_iterate(Vector& out) const override {
    Vector v = velocity_;
    next_velocity(v);
    out = theta_ - lr_ * v;
  }
  double stable_lr_sharpness() const override { return 2 * (1 + beta_) / (1 - beta_); }
  MethodState save() const override { return state({{"velocity", velocity_}}); }
  void restore(const MethodState& s) override {
    restore_iterate(s);
    velocity_ = s.vectors.at(2).second;
  }

 private:
  void next_velocity(Vector& v) const { v = beta_ * v + (1 - beta_) * grad_; }
  double lr_, beta_;
  Vector velocity_;
};

}  // namespace

std::unique_ptr<Method> make_ema_momentum_gd(const MethodContext& context) { return std::make_unique<EmaMomentumGd>(context); }

}  // namespace toys
