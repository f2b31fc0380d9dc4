#include "flow/modified_equation.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>

#include "core/error.hpp"

namespace eomlab {
namespace {

// Rooted trees, interned: a tree is the sorted list of its children's ids.
class Forest {
 public:
  int leaf() { return intern({}); }
  int intern(std::vector<int> children) {
    std::sort(children.begin(), children.end());
    const auto it = index_.find(children);
    if (it != index_.end()) return it->second;
    int nodes = 1;
    for (int c : children) nodes += nodes_[static_cast<std::size_t>(c)];
    const int id = static_cast<int>(children_.size());
    children_.push_back(children);
    nodes_.push_back(nodes);
    index_.emplace(std::move(children), id);
    return id;
  }
  const std::vector<int>& children(int t) const { return children_[static_cast<std::size_t>(t)]; }
  int nodes(int t) const { return nodes_[static_cast<std::size_t>(t)]; }

  // The trees made by attaching σ as a new child to each node of τ in turn (the product rule of the
  // derivative of F(τ) along F(σ)).
  std::vector<int> graft(int tau, int sigma) {
    const std::vector<int> kids = children(tau);
    std::vector<int> out;
    std::vector<int> at_root = kids;
    at_root.push_back(sigma);
    out.push_back(intern(at_root));
    for (std::size_t p = 0; p < kids.size(); ++p)
      for (int grafted : graft(kids[p], sigma)) {
        std::vector<int> changed = kids;
        changed[p] = grafted;
        out.push_back(intern(changed));
      }
    return out;
  }

 private:
  std::vector<std::vector<int>> children_;
  std::vector<int> nodes_;
  std::map<std::vector<int>, int> index_;
};

using Combination = std::map<int, double>;  // tree id -> coefficient

// The derivative of the field X along the field F, X'F, keeping trees of at most `max_nodes` nodes.
Combination lie(Forest& forest, const Combination& x, const Combination& f, int max_nodes) {
  Combination out;
  for (const auto& [tau, cx] : x)
    for (const auto& [sigma, cf] : f)
      if (forest.nodes(tau) + forest.nodes(sigma) <= max_nodes)
        for (int t : forest.graft(tau, sigma)) out[t] += cx * cf;
  return out;
}

void add_scaled(Combination& to, const Combination& x, double s) {
  for (const auto& [t, c] : x) to[t] += s * c;
}

double factorial(int n) { return n <= 1 ? 1.0 : n * factorial(n - 1); }

// Σ_i a_i θ(t+iη) − η Σ_i b_i f(θ(t+iη)) along the flow F, keeping trees of at most q nodes (a tree of
// q nodes is the η^q term).
Combination residual(Forest& forest, const LinearRecurrence& m, const Combination& field, int q) {
  Combination out;
  Combination x = field;  // L^{n-1} F
  Combination y{{forest.leaf(), 1.0}};  // L^n f
  for (int n = 0; n <= q; ++n) {
    for (const auto& [i, b] : m.b) add_scaled(out, y, -b * std::pow(i, n) / factorial(n));
    if (n >= 1) {
      for (const auto& [i, a] : m.a) add_scaled(out, x, a * std::pow(i, n) / factorial(n));
      x = lie(forest, x, field, q);
    }
    y = lie(forest, y, field, q);
  }
  return out;
}

// Truncated power series in z.
using Series = std::vector<double>;

Series times(const Series& p, const Series& q) {
  Series out(p.size(), 0.0);
  for (std::size_t i = 0; i < p.size(); ++i)
    for (std::size_t j = 0; i + j < p.size(); ++j) out[i + j] += p[i] * q[j];
  return out;
}

Series divided(const Series& p, const Series& q) {  // q[0] != 0
  Series out(p.size(), 0.0);
  for (std::size_t n = 0; n < p.size(); ++n) {
    double s = p[n];
    for (std::size_t j = 1; j <= n; ++j) s -= q[j] * out[n - j];
    out[n] = s / q[0];
  }
  return out;
}

Series exponential(const Series& p) {  // p[0] = 0
  Series out(p.size(), 0.0), term(p.size(), 0.0);
  out[0] = term[0] = 1.0;
  for (std::size_t n = 1; n < p.size(); ++n) {
    term = times(term, p);
    for (std::size_t i = 0; i < p.size(); ++i) out[i] += term[i] / factorial(static_cast<int>(n));
  }
  return out;
}

double coefficient(const std::vector<std::pair<int, double>>& c, int offset) {
  double s = 0;
  for (const auto& [i, x] : c)
    if (i == offset) s += x;
  return s;
}

// The amplitude of the slow root in the scalar problem f(θ) = λθ started like the method, as a series
// in z = ηλ: θ0*/θ0. `rate` is log(r_slow), from the derived field.
Series slow_amplitude(const LinearRecurrence& m, const Series& rate) {
  const std::size_t n = rate.size();
  for (const auto& [i, a] : m.a)
    if (i < -1 || i > 1) throw Error("derive_counter_terms: a start for offsets beyond -1..1 is not derived");
  if (coefficient(m.b, 1) != 0) throw Error("derive_counter_terms: implicit methods are not derived");
  const Series slow = exponential(rate);
  // a_1 r² + (a_0 − z b_0) r + (a_{-1} − z b_{-1}) = 0: the parasitic root is the sum of roots minus the slow one.
  Series sum(n, 0.0), parasitic(n, 0.0), numerator(n, 0.0), gap(n, 0.0);
  sum[0] = -coefficient(m.a, 0) / coefficient(m.a, 1);
  if (n > 1) sum[1] = coefficient(m.b, 0) / coefficient(m.a, 1);
  for (std::size_t i = 0; i < n; ++i) parasitic[i] = sum[i] - slow[i];
  for (std::size_t i = 0; i < n; ++i) {
    numerator[i] = (i == 0 ? 1.0 : i == 1 ? m.first_step : 0.0) - parasitic[i];
    gap[i] = slow[i] - parasitic[i];
  }
  return divided(numerator, gap);
}

// Turns trees into the table's elementary differentials of g (F(τ) = (−1)^{nodes} G(τ): f = −g).
class TableBuilder {
 public:
  explicit TableBuilder(const Forest& forest) : forest_(forest) {}
  // The differential of tree t, or -1 if it needs a derivative beyond T (∇⁴L).
  int differential(int t) {
    if (const auto it = made_.find(t); it != made_.end()) return it->second;
    using K = ElementaryDifferential::Kind;
    const std::vector<int>& kids = forest_.children(t);
    if (kids.size() > 2) return -1;
    ElementaryDifferential d{K::gradient};
    if (kids.size() >= 1) {
      d.x = differential(kids[0]);
      if (d.x < 0) return -1;
      d.kind = K::hessian;
    }
    if (kids.size() == 2) {
      // T[x, y] with the larger tree first (T[Hg, g], as GD's table writes it).
      d.y = d.x;
      d.x = differential(kids[1]);
      if (d.x < 0) return -1;
      d.kind = K::third;
    }
    table.differentials.push_back(d);
    return made_[t] = static_cast<int>(table.differentials.size()) - 1;
  }
  // The terms of a combination of trees as entries of the table; false if one needs ∇⁴L.
  bool entries(const Combination& c, std::vector<CounterTermEntry>& out) {
    double largest = 0;
    for (const auto& [t, x] : c) largest = std::max(largest, std::abs(x));
    for (const auto& [t, x] : c) {
      if (std::abs(x) <= 1e-13 * largest) continue;  // a coefficient that cancels exactly, up to rounding
      const int d = differential(t);
      if (d < 0) return false;
      out.push_back({forest_.nodes(t) % 2 == 0 ? x : -x, d});
    }
    return true;
  }
  CounterTermTable table;

 private:
  const Forest& forest_;
  std::map<int, int> made_;
};

}  // namespace

CounterTermTable derive_counter_terms(const LinearRecurrence& m, int max_order) {
  double speed = 0;  // Σ_i a_i i: the factor of F_q in the terms of η^q
  for (const auto& [i, a] : m.a) speed += a * i;
  if (speed == 0) throw Error("derive_counter_terms: the recurrence is not consistent (Σ a_i i = 0)");
  Forest forest;
  Combination field;
  std::vector<Combination> orders;  // F_1, F_2, ...
  for (int q = 1; q <= max_order + 1; ++q) {
    Combination fq;
    for (const auto& [t, c] : residual(forest, m, field, q))
      if (forest.nodes(t) == q) fq[t] = -c / speed;
    add_scaled(field, fq, 1.0);
    orders.push_back(fq);
  }
  TableBuilder builder(forest);
  CounterTermTable& table = builder.table;
  for (const Combination& fq : orders) {
    std::vector<CounterTermEntry> terms;
    if (!builder.entries(fq, terms)) break;
    table.terms.push_back(terms);
  }
  table.memory = m.memory;
  if (!m.memory) return table;
  // The start: s_j is a multiple of the chain tree f'^{j-1} f for j ≤ 2 (the only tree of j nodes).
  Series rate(3, 0.0);  // log of the slow root: the chain trees' coefficients of F_1, F_2
  std::vector<int> chains{forest.leaf()};
  chains.push_back(forest.intern({chains[0]}));
  for (std::size_t j = 1; j <= 2 && j <= orders.size(); ++j)
    if (const auto it = orders[j - 1].find(chains[j - 1]); it != orders[j - 1].end()) rate[j] = it->second;
  const Series amplitude = slow_amplitude(m, rate);
  table.start.push_back({});
  for (int j = 1; j <= 2; ++j) {
    std::vector<CounterTermEntry> s;
    if (!builder.entries({{chains[static_cast<std::size_t>(j - 1)], amplitude[static_cast<std::size_t>(j)]}}, s))
      break;
    table.start.push_back(s);
  }
  return table;
}

const CounterTermTable& cached_counter_terms(const LinearRecurrence& m) {
  static std::mutex mutex;
  static std::map<std::vector<double>, std::unique_ptr<CounterTermTable>> tables;
  std::vector<double> key{m.memory ? 1.0 : 0.0, m.first_step};
  for (const auto& [i, a] : m.a) key.insert(key.end(), {0.0, static_cast<double>(i), a});
  for (const auto& [i, b] : m.b) key.insert(key.end(), {1.0, static_cast<double>(i), b});
  const std::lock_guard<std::mutex> lock(mutex);
  std::unique_ptr<CounterTermTable>& table = tables[key];
  if (!table) table = std::make_unique<CounterTermTable>(derive_counter_terms(m, 3));
  return *table;
}

LinearRecurrence gradient_descent_recurrence() { return {{{0, -1.0}, {1, 1.0}}, {{0, 1.0}}, false, 1.0}; }

// v ← βv + g(θ); θ ← θ − ηv, v starting at 0: θ_{k+1} − (1+β)θ_k + βθ_{k−1} = η f(θ_k), θ_1 = θ_0 + η f(θ_0).
LinearRecurrence heavy_ball_recurrence(double beta) {
  return {{{1, 1.0}, {0, -(1 + beta)}, {-1, beta}}, {{0, 1.0}}, true, 1.0};
}

// v ← βv + g(θ); θ ← θ − η(g + βv): θ_{k+1} − (1+β)θ_k + βθ_{k−1} = η[(1+β) f(θ_k) − β f(θ_{k−1})],
// θ_1 = θ_0 + (1+β)η f(θ_0).
LinearRecurrence nesterov_recurrence(double beta) {
  return {{{1, 1.0}, {0, -(1 + beta)}, {-1, beta}}, {{0, 1 + beta}, {-1, -beta}}, true, 1 + beta};
}

}  // namespace eomlab
