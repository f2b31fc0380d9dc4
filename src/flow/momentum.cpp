// Heavy ball and Nesterov momentum exactly as torch.optim.SGD runs them in float64 (momentum β,
// dampening 0; DESIGN.md §1.5): v ← βv + g(θ) with v starting at 0, then θ ← θ − ηv (heavy ball) or
// θ ← θ − η(g + βv) (nesterov). Their continuous models come from the derived modified equation of
// their two-step recurrences (flow/modified_equation.hpp), started from θ0*.
// Stable on a quadratic while ηλ_max < 2(1+β) (heavy ball) or 2(1+β)/(1+2β) (nesterov).
#include "flow/method.hpp"
#include "flow/modified_equation.hpp"

namespace eomlab {
namespace {

enum class Momentum { heavy_ball, nesterov };

class MomentumMethod final : public GradientMethod {
 public:
  MomentumMethod(const MethodContext& c, Momentum kind)
      : GradientMethod(c.objective), lr_(c.lr), beta_(c.settings.momentum), kind_(kind),
        table_(cached_counter_terms(kind == Momentum::heavy_ball ? heavy_ball_recurrence(beta_)
                                                                 : nesterov_recurrence(beta_))) {}
  std::string name() const override { return kind_ == Momentum::heavy_ball ? "heavy_ball" : "nesterov"; }
  void start(const Vector& theta0) override {
    theta_ = theta0;
    velocity_.setZero(theta0.size());
    evaluate();
  }
  void step() override {
    velocity_ = beta_ * velocity_ + grad_;
    if (kind_ == Momentum::heavy_ball)
      theta_.noalias() -= lr_ * velocity_;
    else
      theta_.noalias() -= lr_ * (grad_ + beta_ * velocity_);
    evaluate();
  }
  void next_iterate(Vector& out) const override {
    const Vector v = beta_ * velocity_ + grad_;
    out = kind_ == Momentum::heavy_ball ? Vector(theta_ - lr_ * v) : Vector(theta_ - lr_ * (grad_ + beta_ * v));
  }
  double stable_lr_sharpness() const override {
    return kind_ == Momentum::heavy_ball ? 2 * (1 + beta_) : 2 * (1 + beta_) / (1 + 2 * beta_);
  }
  const CounterTermTable& counter_terms() const override { return table_; }
  MethodState save() const override { return state({{"velocity", velocity_}}); }
  void restore(const MethodState& s) override {
    restore_iterate(s);
    velocity_ = s.vectors.at(2).second;
  }

 private:
  double lr_, beta_;
  Momentum kind_;
  const CounterTermTable& table_;
  Vector velocity_;
};

}  // namespace

std::unique_ptr<Method> make_heavy_ball(const MethodContext& c) { return std::make_unique<MomentumMethod>(c, Momentum::heavy_ball); }
std::unique_ptr<Method> make_nesterov(const MethodContext& c) { return std::make_unique<MomentumMethod>(c, Momentum::nesterov); }

}  // namespace eomlab
