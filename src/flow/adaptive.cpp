// RMSProp and Adam exactly as torch.optim runs them in float64 (DESIGN.md §1.5; rmsprop: alpha = β2, no
// centering, no momentum; adam: no amsgrad, weight decay inside L), and their continuous models:
//   eom0: θ' = −g/D,  D = |g| + ε (elementwise);
//   eom1: adds −η w ⊙ [(1+β1)/(2(1−β1)) / D − (1+β2)/(2(1−β2)) |g|/D²],  w = H(g/D)
// (rmsprop: β1 = 0). Adam's bias correction makes its start transient O(η²): no start shift. RMSProp
// starts from θ0* = θ0 − η g0 ⊙ Σ_{k≥1} [1/(√(1−β2^k)|g0| + ε) − 1/(|g0| + ε)].
// Their stability depends on the preconditioned sharpness λ_max(P⁻¹H) of the next step's P (the step is
// θ − η P⁻¹ m̃, m̃ = g for rmsprop and the EMA m for adam): P = √s + ε for rmsprop, stable while
// η λ_max(P⁻¹H) < 2; P = (1 − β1^k)(√(s/(1 − β2^k)) + ε) for adam, whose frozen-P step on a quadratic is
// heavy ball with lr η(1 − β1) and momentum β1, stable while η λ_max(P⁻¹H) < 2(1 + β1)/(1 − β1) (38 at
// β1 = 0.9; Cohen et al. 2022).
#include <cmath>
#include <tuple>
#include <utility>

#include "flow/adaptive.hpp"
#include "flow/flow.hpp"
#include "flow/method.hpp"

namespace eomlab {
namespace {

enum class Adaptive { rmsprop, adam };

struct AdaptiveSettings {
  Adaptive kind;
  double beta1, beta2, eps;  // beta1 = 0 for rmsprop
};

// Σ_{k≥1} [1/(√(1−β^k) a + ε) − 1/(a + ε)] where it has at most about 4096 terms above 1e-3 (β ≤ 0.9983):
// summed exactly while β^k > 1e-3, then the tail from the terms' expansion in x = β^k to x⁵ (the
// neglected part is below 1e-18 of the first term), each power of x summed as a geometric series.
double short_start_sum(double a, double beta, double eps) {
  const double steady = 1 / (a + eps);
  double sum = 0, x = beta;
  long k = 1;
  for (; x > 1e-3; ++k, x *= beta) sum += 1 / (std::sqrt(1 - x) * a + eps) - steady;
  // 1/(A − a(x/2 + x²/8 + x³/16 + 5x⁴/128 + 7x⁵/256)) − 1/A = (1/A) Σ_{n≥1} δⁿ, δ = a(…)/A, A = a + ε.
  const double root[6] = {0, 0.5, 0.125, 0.0625, 5.0 / 128, 7.0 / 256};
  double delta[6], power[6] = {1, 0, 0, 0, 0, 0}, term[6] = {0, 0, 0, 0, 0, 0};
  for (int i = 0; i < 6; ++i) delta[i] = a * root[i] * steady;
  for (int n = 1; n <= 5; ++n) {
    double next[6] = {0, 0, 0, 0, 0, 0};
    for (int i = 0; i < 6; ++i)
      for (int j = 1; i + j < 6; ++j) next[i + j] += power[i] * delta[j];
    for (int i = 0; i < 6; ++i) {
      power[i] = next[i];
      term[i] += next[i];
    }
  }
  for (int m = 1; m <= 5; ++m) sum += steady * term[m] * std::pow(x, m) / (1 - std::pow(beta, m));  // Σ_{j≥k} (β^j)^m
  return sum;
}

// The 20-point Gauss–Legendre rule on [0, 1] (nodes by Newton's method on P_20).
struct GaussLegendre {
  static constexpr int n = 20;
  double node[n], weight[n];
  GaussLegendre() {
    for (int i = 0; i < n; ++i) {
      double t = std::cos(M_PI * (i + 0.75) / (n + 0.5)), dp = 1;
      for (int iteration = 0; iteration < 100; ++iteration) {
        double p0 = 1, p1 = t;
        for (int j = 2; j <= n; ++j) std::tie(p0, p1) = std::pair{p1, ((2 * j - 1) * t * p1 - (j - 1) * p0) / j};
        dp = n * (t * p1 - p0) / (t * t - 1);
        const double step = p1 / dp;
        t -= step;
        if (std::abs(step) < 1e-17) break;
      }
      node[i] = (1 - t) / 2;
      weight[i] = 1 / ((1 - t * t) * dp * dp);  // 2/((1−t²)P'²) on [−1, 1], halved on [0, 1]
    }
  }
};

// ∫_{s0}^{1} 2as / ((1+s)(as+ε)(a+ε)) ds for a > 0: ∫ [1/(√(1−x) a + ε) − 1/(a + ε)] dx/x from 0 to
// x0 = 1 − s0² in s = √(1−x). In closed form by partial fractions while ε < a/2; else the poles −1 and
// −ε/a are at least 1/2 from [0, 1] and the closed form's two logarithms cancel, so Gauss–Legendre
// (error ~ 3.7^−40).
double start_integral(double a, double eps, double s0, double one_minus_s0) {
  if (eps < a / 2)
    return 2 / (a + eps) / (a - eps) *  // not 2/((a+ε)(a−ε)): that product overflows for a > 1e154
           (a * std::log1p(one_minus_s0 / (1 + s0)) - eps * std::log1p(a * one_minus_s0 / (a * s0 + eps)));
  static const GaussLegendre rule;
  double sum = 0;
  for (int i = 0; i < GaussLegendre::n; ++i) {
    const double s = s0 + one_minus_s0 * rule.node[i];
    sum += rule.weight[i] * 2 * a * s / ((1 + s) * (a * s + eps));
  }
  return sum * one_minus_s0 / (a + eps);
}

// The same sum for any β < 1 with O(1) work: F(k) = 1/(√(1−β^k) a + ε) − 1/(a + ε) summed exactly for
// k < K = 256, then Σ_{k≥K} F(k) by Gregory's formula, ∫_K^∞ F dk + F(K)/2 − ΔF/12 + Δ²F/24 − 19Δ³F/720
// + 3Δ⁴F/160 − 863Δ⁵F/60480 (forward differences at K), the integral (1/c)·start_integral with β = e^{−c}.
// F varies on the scale k, so the truncation error is O(K⁻⁶), 1e-17 relative at K = 256: below the
// rounding, which leaves about 1e-15 (docs/optimizers.md).
// Each term is formed without the difference of two nearly equal numbers that loses digits when a ≪ ε.
double long_start_sum(double a, double beta, double eps) {
  if (a == 0) return 0;
  constexpr long K = 256;
  const double log_beta = std::log1p(beta - 1), steady = 1 / (a + eps);
  const auto F = [&](long k) {  // = a x / ((1+s)(as+ε)(a+ε)), x = β^k, s = √(1−x): no cancellation for a ≪ ε
    const double kc = static_cast<double>(k) * log_beta;
    const double x = std::exp(kc), s = std::sqrt(-std::expm1(kc));
    return a * x / ((1 + s) * (a * s + eps)) * steady;
  };
  double sum = 0;
  for (long k = 1; k < K; ++k) sum += F(k);
  double d[6];
  for (int j = 0; j < 6; ++j) d[j] = F(K + j);
  constexpr double gregory[6] = {0.5, -1.0 / 12, 1.0 / 24, -19.0 / 720, 3.0 / 160, -863.0 / 60480};
  double tail = 0;
  for (int order = 0; order < 6; ++order) {
    tail += gregory[order] * d[0];
    for (int j = 0; j + order < 5; ++j) d[j] = d[j + 1] - d[j];  // the next forward differences
  }
  const double x0 = std::exp(K * log_beta), s0 = std::sqrt(-std::expm1(K * log_beta));
  return sum + tail + start_integral(a, eps, s0, x0 / (1 + s0)) / -log_beta;
}

}  // namespace

double rmsprop_start_sum(double a, double beta, double eps) {
  constexpr double short_terms = 4096;  // up to here the exact sum, the results of earlier versions bit for bit
  return std::log(1e-3) / std::log(beta) <= short_terms ? short_start_sum(a, beta, eps) : long_start_sum(a, beta, eps);
}

namespace {

// eom0 and eom1 of rmsprop and adam.
class AdaptiveFlow final : public Flow {
 public:
  AdaptiveFlow(Objective& objective, const AdaptiveSettings& s, int order, double lr, bool corrected_start)
      : objective_(objective), s_(s), order_(order), lr_(lr), corrected_start_(corrected_start) {}

  Vector start_point(const Vector& theta0) override {
    if (!corrected_start_ || s_.kind != Adaptive::rmsprop || order_ < 1) return theta0;
    objective_.value_and_gradient(theta0, grad_);
    Vector out = theta0;
    for (Index i = 0; i < out.size(); ++i) out[i] -= lr_ * grad_[i] * rmsprop_start_sum(std::abs(grad_[i]), s_.beta2, s_.eps);
    return out;
  }

 protected:
  void field(const Vector& theta, Vector& out) override {
    objective_.value_and_gradient(theta, grad_);
    denominator_ = grad_.array().abs() + s_.eps;
    direction_ = grad_.array() / denominator_.array();
    out = -direction_;
    if (order_ < 1) return;
    objective_.hessian_vector(theta, direction_, hw_);
    const double a1 = (1 + s_.beta1) / (2 * (1 - s_.beta1)), a2 = (1 + s_.beta2) / (2 * (1 - s_.beta2));
    out.array() -= lr_ * hw_.array() *
                   (a1 / denominator_.array() - a2 * grad_.array().abs() / denominator_.array().square());
  }

 private:
  Objective& objective_;
  AdaptiveSettings s_;
  int order_;
  double lr_;
  bool corrected_start_;
  Vector grad_, denominator_, direction_, hw_;
};

class AdaptiveMethod final : public GradientMethod {
 public:
  AdaptiveMethod(const MethodContext& c, Adaptive kind)
      : GradientMethod(c.objective), lr_(c.lr),
        s_{kind, kind == Adaptive::adam ? c.settings.beta1 : 0.0, c.settings.beta2, c.settings.eps} {}
  std::string name() const override { return s_.kind == Adaptive::adam ? "adam" : "rmsprop"; }
  void start(const Vector& theta0) override {
    theta_ = theta0;
    first_.setZero(theta0.size());
    second_.setZero(theta0.size());
    steps_ = 0;
    evaluate();
  }
  void step() override {
    update(theta_, first_, second_, steps_);
    evaluate();
  }
  void next_iterate(Vector& out) const override {
    Vector m = first_, s = second_;
    long k = steps_;
    out = theta_;
    update(out, m, s, k);
  }
  double stable_lr_sharpness() const override { return 2 * (1 + s_.beta1) / (1 - s_.beta1); }
  bool preconditioned() const override { return true; }
  void preconditioner(Vector& p) const override {
    p = second_;
    advance_second_moment(p);
    if (s_.kind == Adaptive::rmsprop) {
      p = (p.array().sqrt() + s_.eps).matrix();
      return;
    }
    const double kd = static_cast<double>(steps_ + 1);
    const double root_correction = std::sqrt(1 - std::pow(s_.beta2, kd));
    p = ((1 - std::pow(s_.beta1, kd)) * (p.array().sqrt() / root_correction + s_.eps)).matrix();
  }
  int max_model_order() const override { return 1; }
  std::unique_ptr<Flow> make_model(int order, const FlowContext& c) const override {
    return std::make_unique<AdaptiveFlow>(c.objective, s_, order, c.lr, c.start_correction);
  }
  MethodState save() const override {
    return state({{"exp_avg", first_}, {"exp_avg_sq", second_}}, {{"step", static_cast<double>(steps_)}});
  }
  void restore(const MethodState& s) override {
    restore_iterate(s);
    first_ = s.vectors.at(2).second;
    second_ = s.vectors.at(3).second;
    steps_ = static_cast<long>(s.scalars.at(2).second);
  }

 private:
  // s ← β2 s + (1 − β2) g² at the current gradient.
  void advance_second_moment(Vector& s) const { s = s_.beta2 * s + ((1 - s_.beta2) * grad_.array().square()).matrix(); }
  // One step from θ with the state (m, s, k) at the current gradient, in torch's order of operations.
  void update(Vector& theta, Vector& m, Vector& s, long& k) const {
    ++k;
    advance_second_moment(s);
    if (s_.kind == Adaptive::rmsprop) {
      theta.array() -= lr_ * grad_.array() / (s.array().sqrt() + s_.eps);
      return;
    }
    m += (1 - s_.beta1) * (grad_ - m);  // torch: exp_avg.lerp_(grad, 1 − β1)
    const double kd = static_cast<double>(k);
    const double step_size = lr_ / (1 - std::pow(s_.beta1, kd));
    const double root_correction = std::sqrt(1 - std::pow(s_.beta2, kd));
    theta.array() -= step_size * m.array() / (s.array().sqrt() / root_correction + s_.eps);
  }
  double lr_;
  AdaptiveSettings s_;
  Vector first_, second_;
  long steps_ = 0;
};

}  // namespace

std::unique_ptr<Method> make_rmsprop(const MethodContext& c) { return std::make_unique<AdaptiveMethod>(c, Adaptive::rmsprop); }
std::unique_ptr<Method> make_adam(const MethodContext& c) { return std::make_unique<AdaptiveMethod>(c, Adaptive::adam); }

}  // namespace eomlab
