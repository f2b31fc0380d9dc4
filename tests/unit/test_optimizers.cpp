// Issue 14: the optimizers beyond GD (DESIGN.md §1.5). The derived modified equations against the
// verified coefficients of §1.5, the discrete methods against hand-written recurrences, and the error
// orders of their continuous models against the discrete trajectories.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <functional>
#include <map>

#include "flow/adaptive.hpp"
#include "flow/driver.hpp"
#include "flow/flow.hpp"
#include "flow/method.hpp"
#include "flow/modified_equation.hpp"
#include "support/mixture.hpp"
#include "support/model.hpp"
#include "support/recording_sink.hpp"
#include "support/slopes.hpp"

using namespace eomlab;

namespace {

// A differential of a table spelled by structure: g, H(g), T(H(g),g) (T's operands sorted).
std::string spelled(const CounterTermTable& t, int d) {
  const ElementaryDifferential& e = t.differentials[static_cast<std::size_t>(d)];
  switch (e.kind) {
    case ElementaryDifferential::Kind::gradient: return "g";
    case ElementaryDifferential::Kind::hessian: return "H(" + spelled(t, e.x) + ")";
    case ElementaryDifferential::Kind::third: {
      std::string a = spelled(t, e.x), b = spelled(t, e.y);
      if (b < a) std::swap(a, b);
      return "T(" + a + "," + b + ")";
    }
  }
  return "?";
}

using Terms = std::map<std::string, double>;

Terms terms_of(const CounterTermTable& t, const std::vector<CounterTermEntry>& entries) {
  Terms out;
  for (const CounterTermEntry& e : entries) out[spelled(t, e.differential)] += e.coefficient;
  return out;
}

void expect_terms(const Terms& got, const Terms& expected, const std::string& what) {
  EXPECT_EQ(got.size(), expected.size()) << what;
  for (const auto& [name, c] : expected) {
    const auto it = got.find(name);
    ASSERT_NE(it, got.end()) << what << ": no term " << name;
    EXPECT_NEAR(it->second, c, 1e-12 * std::max(1.0, std::abs(c))) << what << ": " << name;
  }
}

}  // namespace

// The engine derives GD's table of DESIGN.md §1.2 (written by hand in counter_terms.cpp) up to eom3.
TEST(ModifiedEquation, DerivesTheCounterTermsOfGradientDescent) {
  const CounterTermTable derived = derive_counter_terms(gradient_descent_recurrence(), 3);
  const CounterTermTable& paper = counter_term_table();
  ASSERT_EQ(derived.max_order(), 3);
  EXPECT_FALSE(derived.memory);
  for (std::size_t j = 0; j < 4; ++j)
    expect_terms(terms_of(derived, derived.terms[j]), terms_of(paper, paper.terms[j]), "f_" + std::to_string(j + 1));
}

// DESIGN.md §1.5, heavy ball (c = 1/(1−β)): eom0 −c g; eom1 −η(1+β)c³/2 Hg, θ0* = θ0 + ηβc² g0; eom2
// −η²[(1+4β+β²)c⁵/3 H²g + (1+10β+β²)c⁵/12 T[g,g]], start + η²β(2+β)c⁴ H0 g0.
TEST(ModifiedEquation, HeavyBallMatchesTheVerifiedCoefficients) {
  for (double b : {0.0, 0.5, 0.9}) {
    const CounterTermTable t = derive_counter_terms(heavy_ball_recurrence(b), 3);
    const double c = 1 / (1 - b);
    const std::string at = "heavy ball, beta " + std::to_string(b);
    ASSERT_GE(t.max_order(), 2) << at;
    EXPECT_TRUE(t.memory);
    expect_terms(terms_of(t, t.terms[0]), {{"g", -c}}, at + ", f_1");
    expect_terms(terms_of(t, t.terms[1]), {{"H(g)", -(1 + b) * std::pow(c, 3) / 2}}, at + ", f_2");
    expect_terms(terms_of(t, t.terms[2]),
                 {{"H(H(g))", -(1 + 4 * b + b * b) * std::pow(c, 5) / 3}, {"T(g,g)", -(1 + 10 * b + b * b) * std::pow(c, 5) / 12}},
                 at + ", f_3");
    if (b == 0) {
      EXPECT_TRUE(t.start[1].empty() || terms_of(t, t.start[1]).begin()->second == 0);
      continue;
    }
    expect_terms(terms_of(t, t.start[1]), {{"g", b * c * c}}, at + ", s_1");
    expect_terms(terms_of(t, t.start[2]), {{"H(g)", b * (2 + b) * std::pow(c, 4)}}, at + ", s_2");
  }
}

// DESIGN.md §1.5, Nesterov: eom1 −η(1−β+2β²)c³/2 Hg, θ0* = θ0 + ηβ²c² g0; eom2
// −η²[(1−2β+7β²−3β³+3β⁴)c⁵/3 H²g + (1−2β+13β²)c⁵/12 T[g,g]], start + η²β²(2+β²)c⁴ H0 g0.
TEST(ModifiedEquation, NesterovMatchesTheVerifiedCoefficients) {
  for (double b : {0.5, 0.9}) {
    const CounterTermTable t = derive_counter_terms(nesterov_recurrence(b), 3);
    const double c = 1 / (1 - b), b2 = b * b;
    const std::string at = "nesterov, beta " + std::to_string(b);
    ASSERT_GE(t.max_order(), 2) << at;
    expect_terms(terms_of(t, t.terms[0]), {{"g", -c}}, at + ", f_1");
    expect_terms(terms_of(t, t.terms[1]), {{"H(g)", -(1 - b + 2 * b2) * std::pow(c, 3) / 2}}, at + ", f_2");
    expect_terms(terms_of(t, t.terms[2]),
                 {{"H(H(g))", -(1 - 2 * b + 7 * b2 - 3 * b2 * b + 3 * b2 * b2) * std::pow(c, 5) / 3},
                  {"T(g,g)", -(1 - 2 * b + 13 * b2) * std::pow(c, 5) / 12}},
                 at + ", f_3");
    expect_terms(terms_of(t, t.start[1]), {{"g", b2 * c * c}}, at + ", s_1");
    expect_terms(terms_of(t, t.start[2]), {{"H(g)", b2 * (2 + b2) * std::pow(c, 4)}}, at + ", s_2");
  }
}

// On a quadratic with eigenvalue λ the slow root of r² − (1+β−ηλ)r + β = 0 gives heavy ball's exact
// rate log(r)/η; the derived field's series −cλ − η(1+β)c³λ²/2 − … must approach it order by order.
TEST(ModifiedEquation, HeavyBallSeriesApproachesTheSlowRootOfAQuadratic) {
  const double beta = 0.6, lambda = 1.3;
  const CounterTermTable t = derive_counter_terms(heavy_ball_recurrence(beta), 3);
  // On a scalar quadratic every differential of the chain H^k g is (λ^k)·λθ and T = 0: the field's rate.
  const auto rate = [&](int order, double lr) {
    double r = 0, power = 1;
    for (int j = 0; j <= order; ++j, power *= lr)
      for (const CounterTermEntry& e : t.terms[static_cast<std::size_t>(j)]) {
        const std::string s = spelled(t, e.differential);
        if (s.find('T') != std::string::npos) continue;
        r += power * e.coefficient * std::pow(lambda, static_cast<double>(std::count(s.begin(), s.end(), 'H')) + 1);
      }
    return r;
  };
  // f_4 has a term Q[g, g, g] (∇⁴L, which eomlab does not compute; its coefficient vanishes at β = 0
  // only), so the table ends with f_3: eom2.
  ASSERT_EQ(t.terms.size(), 3u);
  for (int order = 0; order <= 2; ++order) {
    std::vector<double> errors;
    for (double lr : {0.002, 0.001}) {
      const double p = 1 + beta - lr * lambda;
      const double slow = (p + std::sqrt(p * p - 4 * beta)) / 2;
      errors.push_back(std::abs(rate(order, lr) - std::log(slow) / lr));
    }
    const double slope = std::log2(errors[0] / errors[1]);
    EXPECT_NEAR(slope, order + 1, 0.1) << "order " << order << ": errors " << errors[0] << ", " << errors[1];
  }
}

namespace {

struct SlopeRun {
  std::string method;
  MethodSettings settings;
  std::vector<std::string> flows;
  std::vector<double> lrs;
  double horizon = 0.4;
  bool start_correction = true;
};

// The method and its flows on a small tanh network to a fixed final time at each lr; the log-log slope
// of each flow's final distance to the discrete trajectory.
std::vector<double> slopes(const SlopeRun& r) {
  const std::vector<Index> widths{5, 8, 3};
  const Dataset d = test::mixture(48, widths, 4);
  std::vector<std::vector<double>> distance(r.flows.size());
  for (double lr : r.lrs) {
    Model mlp = test::mlp_model(widths, Activation::tanh, LossKind::cross_entropy);
    const Vector theta0 = mlp.initial_parameters(3);
    const ObservableLayout layout = observable_layout(mlp, false);
    const WholeVector local(mlp.n_params());
    ModelObjective objective(std::move(mlp), d, d.n_samples(), 0.0, local);
    DriverSettings s;
    s.method = r.method;
    s.method_settings = r.settings;
    s.start_correction = r.start_correction;
    s.lr = lr;
    s.steps = std::lround(r.horizon / lr);
    s.record_every = s.steps;
    s.flows = r.flows;
    s.integrator = {1e-13, 1e-15};
    test::RecordingSink sink;
    run_synchronized(objective, theta0, s, layout, local, sink);
    for (std::size_t f = 0; f < r.flows.size(); ++f) distance[f].push_back(sink.records.back().trajectories[f + 1].distance_to_gd);
  }
  std::vector<double> out;
  for (std::size_t f = 0; f < r.flows.size(); ++f) {
    out.push_back(test::loglog_slope(r.lrs, distance[f]));
    std::printf("%s %s%s: distances", r.method.c_str(), r.flows[f].c_str(), r.start_correction ? "" : " (start θ0)");
    for (double x : distance[f]) std::printf(" %.3e", x);
    std::printf(", slope %.3f\n", out.back());
  }
  return out;
}

}  // namespace

// DESIGN.md §1.5: eomP of heavy ball and Nesterov, started from θ0*, is within lr^(P+1) of the discrete
// trajectory at a fixed final time (slopes P+1 ± 0.25), for β = 0.5 and 0.8.
TEST(OptimizerOrders, MomentumMethodsEom0ToEom2HaveSlopesOneToThree) {
  for (const char* method : {"heavy_ball", "nesterov"})
    for (double beta : {0.5, 0.8}) {
      SlopeRun r;
      r.method = method;
      r.settings.momentum = beta;
      r.flows = {"eom0", "eom1", "eom2"};
      r.lrs = beta < 0.6 ? std::vector<double>{0.02, 0.01, 0.005} : std::vector<double>{0.005, 0.0025, 0.00125};
      const std::vector<double> s = slopes(r);
      for (std::size_t p = 0; p < s.size(); ++p) EXPECT_NEAR(s[p], static_cast<double>(p) + 1.0, 0.25) << method << ", beta " << beta << ", eom" << p;
    }
}

// Without θ0* the error stalls at O(lr): heavy ball's eom1 from θ0 has slope about 1, not 2.
TEST(OptimizerOrders, HeavyBallEom1WithoutTheStartCorrectionFallsToSlopeOne) {
  SlopeRun r;
  r.method = "heavy_ball";
  r.settings.momentum = 0.5;
  r.flows = {"eom1"};
  r.lrs = {0.02, 0.01, 0.005};
  r.start_correction = false;
  EXPECT_NEAR(slopes(r)[0], 1.0, 0.25);
}

// DESIGN.md §1.5: eom0 and eom1 of Adam (no start shift) and RMSProp (with θ0*) are within lr and lr²
// of the discrete trajectory at a fixed final time, with ε = 0.1 and 0.01 and β1 ≷ β2.
TEST(OptimizerOrders, AdamAndRmspropEom0AndEom1HaveSlopesOneAndTwo) {
  struct Case {
    const char* method;
    double beta1, beta2, eps;
  };
  // The expansion parameter grows like lr/(1 − β): β2 = 0.999 would need far smaller lrs and longer runs.
  for (const Case& c : {Case{"adam", 0.5, 0.9, 0.1}, Case{"adam", 0.9, 0.5, 0.01}, Case{"rmsprop", 0, 0.9, 0.1},
                        Case{"rmsprop", 0, 0.5, 0.01}}) {
    SlopeRun r;
    r.method = c.method;
    r.settings.beta1 = c.beta1;
    r.settings.beta2 = c.beta2;
    r.settings.eps = c.eps;
    r.flows = {"eom0", "eom1"};
    r.lrs = {0.002, 0.001, 0.0005};
    r.horizon = 0.2;
    const std::vector<double> s = slopes(r);
    for (std::size_t p = 0; p < s.size(); ++p)
      EXPECT_NEAR(s[p], static_cast<double>(p) + 1.0, 0.25) << c.method << " beta1 " << c.beta1 << " beta2 " << c.beta2 << " eps " << c.eps << ", eom" << p;
  }
}

namespace {

struct SmallNet {
  std::vector<Index> widths{4, 6, 3};
  Dataset data = test::mixture(24, widths, 5);
  Vector theta0 = test::mlp_model(widths, Activation::tanh, LossKind::cross_entropy).initial_parameters(1);
  WholeVector local{theta0.size()};
  ModelObjective objective{test::mlp_model(widths, Activation::tanh, LossKind::cross_entropy), data, data.n_samples(),
                           0.01, local};
};

// The method's iterates after `steps` steps.
std::vector<Vector> iterates(Objective& objective, const std::string& method, const MethodSettings& settings, double lr,
                             const Vector& theta0, int steps) {
  const std::unique_ptr<Method> m = make_method(method, {objective, lr, settings});
  m->start(theta0);
  std::vector<Vector> out{m->theta()};
  for (int k = 0; k < steps; ++k) {
    m->step();
    out.push_back(m->theta());
  }
  return out;
}

}  // namespace

// Each method against its update written out by hand (DESIGN.md §1.5, torch.optim's formulas).
TEST(Methods, EachMethodFollowsItsHandWrittenRecurrence) {
  SmallNet net;
  const double lr = 0.05;
  const int steps = 25;
  const Index n = net.theta0.size();
  MethodSettings s;
  s.momentum = 0.7;
  s.beta1 = 0.8;
  s.beta2 = 0.95;
  s.eps = 1e-3;
  const auto gradient = [&](const Vector& theta) {
    Vector g;
    net.objective.value_and_gradient(theta, g);
    return g;
  };
  for (const char* method : {"heavy_ball", "nesterov", "rmsprop", "adam"}) {
    Vector theta = net.theta0, v = Vector::Zero(n), m = Vector::Zero(n), sq = Vector::Zero(n);
    std::vector<Vector> expected{theta};
    for (int k = 1; k <= steps; ++k) {
      const Vector g = gradient(theta);
      for (Index i = 0; i < n; ++i) {
        const std::string name = method;
        if (name == "heavy_ball" || name == "nesterov") {
          v[i] = s.momentum * v[i] + g[i];
          theta[i] -= lr * (name == "heavy_ball" ? v[i] : g[i] + s.momentum * v[i]);
        } else if (name == "rmsprop") {
          sq[i] = s.beta2 * sq[i] + (1 - s.beta2) * g[i] * g[i];
          theta[i] -= lr * g[i] / (std::sqrt(sq[i]) + s.eps);
        } else {
          m[i] = s.beta1 * m[i] + (1 - s.beta1) * g[i];
          sq[i] = s.beta2 * sq[i] + (1 - s.beta2) * g[i] * g[i];
          const double mhat = m[i] / (1 - std::pow(s.beta1, k)), shat = sq[i] / (1 - std::pow(s.beta2, k));
          theta[i] -= lr * mhat / (std::sqrt(shat) + s.eps);
        }
      }
      expected.push_back(theta);
    }
    const std::vector<Vector> got = iterates(net.objective, method, s, lr, net.theta0, steps);
    for (int k = 0; k <= steps; ++k)
      EXPECT_LT((got[static_cast<std::size_t>(k)] - expected[static_cast<std::size_t>(k)]).norm(),
                1e-13 * expected[static_cast<std::size_t>(k)].norm())
          << method << ", step " << k;
  }
}

// The preconditioner of RMSProp and Adam is the P their next step divides by: θ_k − θ_{k+1} = η m̃/P
// with m̃ from the hand-written recurrence (g for rmsprop, the EMA m_{k+1} for adam); the other methods
// have none.
TEST(Methods, AdaptivePreconditionerIsWhatTheNextStepDividesBy) {
  SmallNet net;
  const double lr = 0.05;
  MethodSettings s;
  s.beta1 = 0.8;
  s.beta2 = 0.95;
  s.eps = 1e-3;
  s.batch_size = 8;
  for (const char* method : {"gd", "heavy_ball", "nesterov", "sgd"})
    EXPECT_FALSE(make_method(method, {net.objective, lr, s})->preconditioned()) << method;
  for (const std::string method : {"rmsprop", "adam"}) {
    const std::unique_ptr<Method> m = make_method(method, {net.objective, lr, s});
    ASSERT_TRUE(m->preconditioned());
    m->start(net.theta0);
    Vector ema = Vector::Zero(net.theta0.size()), p, next;
    for (int k = 0; k < 12; ++k) {
      const Vector& g = m->gradient();
      const Vector step = method == "adam" ? Vector(s.beta1 * ema + (1 - s.beta1) * g) : g;
      m->preconditioner(p);
      m->next_iterate(next);
      const Vector expected = lr * step.array() / p.array();
      EXPECT_LT((m->theta() - next - expected).norm(), 1e-13 * expected.norm()) << method << ", step " << k;
      EXPECT_GT(p.minCoeff(), 0.0);
      ema = step;
      m->step();
    }
  }
}

// Each method's stable_lr_sharpness is the stability boundary of its step on a quadratic along an
// eigendirection of P⁻¹H (P = 1 for the non-adaptive methods, frozen for the adaptive ones): with
// a = lr·λ 0.5% below it the iterate decays, 0.5% above it grows.
TEST(Methods, StableLrSharpnessIsTheBoundaryOfTheLinearisedStep) {
  QuadraticObjective stand_in(Matrix::Identity(1, 1));
  MethodSettings s;
  s.momentum = 0.7;
  s.beta1 = 0.9;
  s.beta2 = 0.99;
  // |x| after many steps of the method's linear recurrence with lr·λ = a, from x = 1 and no memory.
  const auto final_size = [&](const std::string& method, double a) {
    double x = 1, v = 0;
    for (int k = 0; k < 20000 && std::abs(x) < 1e12; ++k) {
      if (method == "gd") {
        x -= a * x;
      } else if (method == "heavy_ball" || method == "nesterov") {  // torch: v = μv + g, x −= lr(v or g + μv)
        v = s.momentum * v + x;
        x -= a * (method == "heavy_ball" ? v : x + s.momentum * v);
      } else {  // frozen P: m = β1 m + (1 − β1) g, x −= lr m / P (rmsprop: β1 = 0)
        const double beta1 = method == "adam" ? s.beta1 : 0.0;
        v = beta1 * v + (1 - beta1) * x;
        x -= a * v;
      }
    }
    return std::abs(x);
  };
  for (const char* method : {"gd", "heavy_ball", "nesterov", "rmsprop", "adam"}) {
    const double limit = make_method(method, {stand_in, 0.1, s})->stable_lr_sharpness();
    EXPECT_LT(final_size(method, 0.995 * limit), 1e-6) << method << ", limit " << limit;
    EXPECT_GT(final_size(method, 1.005 * limit), 1e6) << method << ", limit " << limit;
  }
  EXPECT_DOUBLE_EQ(make_method("adam", {stand_in, 0.1, s})->stable_lr_sharpness(), 38.0);
  EXPECT_DOUBLE_EQ(make_method("rmsprop", {stand_in, 0.1, s})->stable_lr_sharpness(), 2.0);
}

// save() then restore() into a fresh method continues with the same bits, for every method.
TEST(Methods, SaveAndRestoreContinueWithTheSameBits) {
  SmallNet net;
  MethodSettings s;
  for (const char* method : {"gd", "heavy_ball", "nesterov", "rmsprop", "adam"}) {
    const std::vector<Vector> straight = iterates(net.objective, method, s, 0.05, net.theta0, 10);
    const std::unique_ptr<Method> first = make_method(method, {net.objective, 0.05, s});
    first->start(net.theta0);
    for (int k = 0; k < 4; ++k) first->step();
    const std::unique_ptr<Method> second = make_method(method, {net.objective, 0.05, s});
    second->restore(first->save());
    for (int k = 4; k < 10; ++k) second->step();
    EXPECT_EQ(second->theta(), straight.back()) << method;
    Vector next;
    first->next_iterate(next);
    first->step();
    EXPECT_EQ(next, first->theta()) << method << ": next_iterate is the next step";
  }
}

// RMSProp's start shift θ0* − θ0 = −η g0 ⊙ Σ_{k≥1} [1/(√(1−β2^k)|g0| + ε) − 1/(|g0| + ε)] against the
// sum taken term by term until the terms vanish; eom0 and Adam's models start from θ0.
TEST(Methods, RmspropStartShiftIsTheSummedTransient) {
  SmallNet net;
  const double lr = 0.01;
  for (double beta2 : {0.9, 0.99}) {
    MethodSettings s;
    s.beta2 = beta2;
    s.eps = 1e-3;
    Vector g;
    net.objective.value_and_gradient(net.theta0, g);
    Vector expected = net.theta0;
    for (Index i = 0; i < g.size(); ++i) {
      const double a = std::abs(g[i]);
      double sum = 0, x = beta2;
      for (int k = 1; k < 200000 && x > 1e-300; ++k, x *= beta2) sum += 1 / (std::sqrt(1 - x) * a + s.eps) - 1 / (a + s.eps);
      expected[i] -= lr * g[i] * sum;
    }
    const Vector start = make_flow("eom1", net.objective, "rmsprop", lr, s)->start_point(net.theta0);
    EXPECT_LT((start - expected).norm(), 1e-12 * (expected - net.theta0).norm()) << "beta2 " << beta2;
    EXPECT_GT((start - net.theta0).norm(), 1e-4);
    EXPECT_EQ(make_flow("eom0", net.objective, "rmsprop", lr, s)->start_point(net.theta0), net.theta0);
    EXPECT_EQ(make_flow("eom1", net.objective, "adam", lr, s)->start_point(net.theta0), net.theta0);
  }
}

// The start sum S(a, β, ε) = Σ_{k≥1} [1/(√(1−β^k) a + ε) − 1/(a + ε)] against the terms summed one by one
// in long double until β^k < 1e-20 (β^k and 1 − β^k by recurrences, recomputed every 4096 terms): on both sides of the
// switch to Gregory's formula (4096 terms above 1e-3, β ≈ 0.9983) and for ε/a on both sides of 1/2 (the
// closed-form integral and Gauss–Legendre). Before, β2 > 0.99999 was refused: the sum took hours.
long double start_sum_term_by_term(double a, double beta, double eps) {
  const long double one_minus_beta = 1.0L - beta, steady = 1.0L / (static_cast<long double>(a) + eps);
  const long double log_beta = std::log1p(static_cast<long double>(beta) - 1);
  long double sum = 0, lost = 0, y = one_minus_beta, x = beta;  // each term as a x / ((1+s)(as+ε)(a+ε)), s = √y
  for (long k = 1; x > 1e-20L; ++k, y = one_minus_beta + beta * y, x *= beta) {
    if (k % 4096 == 0) x = std::exp(k * log_beta), y = -std::expm1(k * log_beta);  // no drift over 1e7 steps
    const long double term = a * x / ((1 + std::sqrt(y)) * (a * std::sqrt(y) + eps)) * steady - lost;
    const long double next = sum + term;  // Kahan's compensated sum
    lost = (next - sum) - term;
    sum = next;
  }
  return sum;
}

TEST(Methods, RmspropStartSumForAnyBeta2) {
  struct Case {
    double a, eps;
  };
  // The last: a gradient of 1e155, where (a + ε)(a − ε) would overflow (found by a review).
  const std::vector<Case> cases{{1.0, 1e-8}, {1e-3, 1e-8}, {0.02, 0.015}, {0.02, 0.01}, {0.02, 0.0099}, {1e-9, 1e-3},
                                {1e155, 1e-8}};
  for (double beta : {0.99, 0.998, 0.9985, 0.9995, 0.99999, 1 - 1e-6}) {
    for (const Case& c : cases) {
      if (beta > 0.99999 && c.a != 1e-3) continue;  // 4.6e7 terms: one case
      const long double expected = start_sum_term_by_term(c.a, beta, c.eps);
      const double got = rmsprop_start_sum(c.a, beta, c.eps);
      // The term-by-term path (β up to 0.9983, kept bit for bit) forms each term as a difference: it loses
      // digits in proportion to ε/a.
      const double tolerance = beta < 0.9983 ? 1e-13 * std::max(1.0, c.eps / c.a) : 4e-15;
      EXPECT_LT(std::abs((got - expected) / expected), tolerance) << "beta " << beta << " a " << c.a << " eps " << c.eps;
    }
  }
  EXPECT_EQ(rmsprop_start_sum(0.0, 1 - 1e-9, 1e-8), 0.0);
  // β → 1: S ≈ (1/c) ∫_0^1 2as/((1+s)(as+ε)(a+ε)) ds, β = e^{−c}, the integral 2(a ln 2 − ε ln((a+ε)/ε))/(a²−ε²).
  for (const Case& c : {Case{1.0, 1e-8}, Case{0.02, 0.015}}) {
    const double beta = 1 - 1e-12, rate = -std::log1p(beta - 1);
    const double limit = 2 * (c.a * std::log(2.0) - c.eps * std::log((c.a + c.eps) / c.eps)) / (c.a * c.a - c.eps * c.eps);
    EXPECT_NEAR(rmsprop_start_sum(c.a, beta, c.eps) * rate / limit, 1.0, 1e-4) << "a " << c.a << " eps " << c.eps;
  }
}

// An order a method does not provide is bad input naming the method and the order.
TEST(Methods, AnOrderBeyondTheMethodsModelsIsRefused) {
  SmallNet net;
  for (const auto& [method, order] : {std::pair<std::string, std::string>{"heavy_ball", "eom3"}, {"adam", "eom2"}, {"rmsprop", "eom3"}}) {
    try {
      make_flow(order, net.objective, method, 0.01);
      ADD_FAILURE() << method << " " << order << " was made";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(method), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(order), std::string::npos) << e.what();
    }
  }
}
