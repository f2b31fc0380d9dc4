// Issue 14: the optimizers beyond GD (DESIGN.md §1.5). The derived modified equations against the
// verified coefficients of §1.5, the discrete methods against hand-written recurrences, and the error
// orders of their continuous models against the discrete trajectories.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <functional>
#include <map>

#include "flow/driver.hpp"
#include "flow/flow.hpp"
#include "flow/method.hpp"
#include "flow/modified_equation.hpp"
#include "support/mixture.hpp"
#include "support/model.hpp"
#include "support/recording_sink.hpp"

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

// Least-squares slope of log y against log x.
double loglog_slope(const std::vector<double>& x, const std::vector<double>& y) {
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  const double n = static_cast<double>(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double lx = std::log(x[i]), ly = std::log(y[i]);
    sx += lx;
    sy += ly;
    sxx += lx * lx;
    sxy += lx * ly;
  }
  return (n * sxy - sx * sy) / (n * sxx - sx * sx);
}

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
    out.push_back(loglog_slope(r.lrs, distance[f]));
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
      for (std::size_t p = 0; p < s.size(); ++p) EXPECT_NEAR(s[p], p + 1.0, 0.25) << method << ", beta " << beta << ", eom" << p;
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
