// An objective that eomlab does not know, run through eomlab's machinery: the Rosenbrock function
//     L(x) = Σ_{i<n-1} b (x_{i+1} − x_i²)² + (a − x_i)²      (here a = 1, b = 100, n = 4)
// with its exact gradient, Hessian-vector product and third-order contraction T[u, v] = ∇³L[u, v].
// GD (run here) is compared at a fixed time T with gf, eom1 and eom2 integrated by eomlab's DOP853 from
// eomlab's flows (its registry's eom0..eom2 of gd): the distance to GD must fall like lr, lr² and lr³ (DESIGN.md §1.3).
// Exits 1 if the derivatives disagree with finite differences, an integration fails, or an order is off.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/slices.hpp"
#include "diff/objective.hpp"
#include "flow/dop853.hpp"
#include "flow/flow.hpp"

using eomlab::Index;
using eomlab::Vector;

namespace {

class Rosenbrock final : public eomlab::Objective {
 public:
  Rosenbrock(Index n, double a, double b) : n_(n), a_(a), b_(b) {}
  Index dimension() const override { return n_; }

  double value(const Vector& x) override {
    double l = 0;
    for (Index i = 0; i + 1 < n_; ++i) {
      const double u = x[i + 1] - x[i] * x[i], d = a_ - x[i];
      l += b_ * u * u + d * d;
    }
    return l;
  }

  double value_and_gradient(const Vector& x, Vector& g) override {
    g.setZero(n_);
    for (Index i = 0; i + 1 < n_; ++i) {
      const double u = x[i + 1] - x[i] * x[i];
      g[i] += -4 * b_ * x[i] * u - 2 * (a_ - x[i]);
      g[i + 1] += 2 * b_ * u;
    }
    return value(x);
  }

  void hessian_vector(const Vector& x, const Vector& v, Vector& hv) override {
    hv.setZero(n_);
    for (Index i = 0; i + 1 < n_; ++i) {
      const double hii = 12 * b_ * x[i] * x[i] - 4 * b_ * x[i + 1] + 2, hij = -4 * b_ * x[i], hjj = 2 * b_;
      hv[i] += hii * v[i] + hij * v[i + 1];
      hv[i + 1] += hij * v[i] + hjj * v[i + 1];
    }
  }

  // The only third derivatives of a term: ∂³/∂x_i³ = 24 b x_i and ∂³/∂x_i²∂x_{i+1} = −4b.
  void third_order(const Vector& x, const Vector& u, const Vector& v, Vector& out) override {
    out.setZero(n_);
    for (Index i = 0; i + 1 < n_; ++i) {
      out[i] += 24 * b_ * x[i] * u[i] * v[i] - 4 * b_ * (u[i] * v[i + 1] + u[i + 1] * v[i]);
      out[i + 1] += -4 * b_ * u[i] * v[i];
    }
  }

 private:
  Index n_;
  double a_, b_;
};

double relative_error(const Vector& x, const Vector& reference) { return (x - reference).norm() / reference.norm(); }

// H v and T[u, v] against central differences of g and of H v.
bool derivatives_agree(Rosenbrock& f, const Vector& x) {
  const Index n = x.size();
  Vector u(n), v(n);
  for (Index i = 0; i < n; ++i) {
    u[i] = std::sin(1.0 + static_cast<double>(i));
    v[i] = std::cos(2.0 * static_cast<double>(i));
  }
  const double eps = 1e-5;
  Vector gp, gm, hv, hp, hm, t;
  f.value_and_gradient(x + eps * v, gp);
  f.value_and_gradient(x - eps * v, gm);
  f.hessian_vector(x, v, hv);
  f.hessian_vector(x + eps * u, v, hp);
  f.hessian_vector(x - eps * u, v, hm);
  f.third_order(x, u, v, t);
  const double e_h = relative_error(hv, (gp - gm) / (2 * eps)), e_t = relative_error(t, (hp - hm) / (2 * eps));
  std::printf("finite differences: Hv %.1e, T[u,v] %.1e (relative)\n", e_h, e_t);
  return e_h < 1e-7 && e_t < 1e-7;
}

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

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // each line out before a crash, even into a pipe
  const Index n = 4;
  Rosenbrock f(n, 1.0, 100.0);
  Vector theta0(n);
  theta0 << -1.2, 1.0, -0.5, 0.8;
  bool ok = derivatives_agree(f, theta0);

  const double horizon = 0.04;
  const int max_order = 2;  // gf, eom1, eom2
  const eomlab::WholeVector whole(n);  // one process owns every vector; also the integrator's reducer
  std::vector<double> lrs{0.0004, 0.0002, 0.0001, 0.00005};
  std::vector<std::vector<double>> distance(max_order + 1);
  std::printf("%-8s %12s %12s %12s  field evaluations\n", "lr", "|gf-GD|", "|eom1-GD|", "|eom2-GD|");
  for (double lr : lrs) {
    const long steps = std::lround(horizon / lr);
    Vector gd = theta0, g;
    for (long k = 0; k < steps; ++k) {
      f.value_and_gradient(gd, g);
      gd -= lr * g;
    }
    std::printf("%-8g", lr);
    std::vector<long> evaluations;
    for (int order = 0; order <= max_order; ++order) {
      // GD's eom<order> from eomlab's flow registry: F = f_1 + lr f_2 + ... + lr^order f_{order+1}.
      const auto flow = eomlab::make_flow("eom" + std::to_string(order), f, "gd", lr);
      eomlab::Flow& field = *flow;
      long calls = 0;
      eomlab::Dop853 integrator(
          [&](const Vector& y, Vector& dydt) {
            ++calls;
            field(y, dydt);
          },
          eomlab::IntegratorSettings{1e-12, 1e-14, 1000000}, whole, whole.global_size());
      integrator.set_end_time(static_cast<double>(steps) * lr);
      integrator.start(0.0, theta0);
      Vector y = theta0;
      if (integrator.advance_to(static_cast<double>(steps) * lr, y) != eomlab::Dop853::Status::ok) {
        std::printf("\nintegration of order %d failed\n", order);
        return 1;
      }
      distance[order].push_back((y - gd).norm());
      evaluations.push_back(calls);
      std::printf(" %12.4e", distance[order].back());
    }
    std::printf("  %ld %ld %ld\n", evaluations[0], evaluations[1], evaluations[2]);
  }
  const char* names[] = {"gf", "eom1", "eom2"};
  for (int order = 0; order <= max_order; ++order) {
    const double slope = loglog_slope(lrs, distance[order]);
    bool good = std::fabs(slope - (order + 1)) < 0.2;
    // and each order closer to GD than the one before, at every lr
    for (std::size_t i = 0; order > 0 && i < lrs.size(); ++i) good = good && distance[order][i] < distance[order - 1][i];
    std::printf("%s: distance to GD ~ lr^%.3f (expected %d)%s\n", names[order], slope, order + 1, good ? "" : "  FAILED");
    ok = ok && good;
  }
  std::printf("%s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
