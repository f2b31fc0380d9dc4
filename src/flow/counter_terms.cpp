#include "flow/counter_terms.hpp"

#include "core/error.hpp"

namespace eomlab {

const CounterTermTable& counter_term_table() {
  using K = ElementaryDifferential::Kind;
  static const CounterTermTable table = [] {
    CounterTermTable t;
    enum { g, Hg, HHg, HHHg, Tgg, THgg, HTgg };
    t.differentials = {
        {K::gradient},      // g
        {K::hessian, g},    // H g
        {K::hessian, Hg},   // H² g
        {K::hessian, HHg},  // H³ g
        {K::third, g, g},   // T[g, g]
        {K::third, Hg, g},  // T[Hg, g]
        {K::hessian, Tgg},  // H T[g, g]
    };
    t.terms = {
        {{-1.0, g}},                                                   // f_1
        {{-1.0 / 2, Hg}},                                              // f_2
        {{-1.0 / 3, HHg}, {-1.0 / 12, Tgg}},                           // f_3
        {{-1.0 / 4, HHHg}, {-1.0 / 12, THgg}, {-1.0 / 12, HTgg}},      // f_4
    };
    return t;
  }();
  return table;
}

CounterTermEvaluator::CounterTermEvaluator(Objective& objective, const CounterTermTable& table, int order, double lr,
                                           Part part)
    : objective_(objective), table_(table), terms_(part == Part::field ? table.terms : table.start), order_(order), lr_(lr) {
  if (order < 0 || order > table.max_order() || static_cast<std::size_t>(order) >= terms_.size())
    throw Error("CounterTermEvaluator: order " + std::to_string(order) + " is beyond the table (max " +
                std::to_string(table.max_order()) + ")");
  const std::size_t n = table.differentials.size();
  needed_.assign(n, false);
  for (int j = 0; j <= order; ++j)
    for (const CounterTermEntry& e : terms_[static_cast<std::size_t>(j)]) needed_[static_cast<std::size_t>(e.differential)] = true;
  for (std::size_t i = n; i-- > 0;) {
    if (!needed_[i]) continue;
    const ElementaryDifferential& d = table.differentials[i];
    if (d.x >= 0) needed_[static_cast<std::size_t>(d.x)] = true;
    if (d.y >= 0) needed_[static_cast<std::size_t>(d.y)] = true;
  }
  values_.resize(n);
  done_.assign(n, false);
  // A needed T[x, x] whose H x is needed too is computed with it (both come from one jet pass).
  fused_third_.assign(n, -1);
  for (std::size_t j = 0; j < n; ++j) {
    const ElementaryDifferential& h = table.differentials[j];
    if (!needed_[j] || h.kind != ElementaryDifferential::Kind::hessian) continue;
    for (std::size_t i = 0; i < n; ++i) {
      const ElementaryDifferential& t = table.differentials[i];
      if (needed_[i] && t.kind == ElementaryDifferential::Kind::third && t.x == h.x && t.y == h.x) {
        fused_third_[j] = static_cast<int>(i);
        break;
      }
    }
  }
}

void CounterTermEvaluator::operator()(const Vector& theta, Vector& out) {
  using K = ElementaryDifferential::Kind;
  const CounterTermTable& table = table_;
  std::fill(done_.begin(), done_.end(), false);
  for (std::size_t i = 0; i < table.differentials.size(); ++i) {
    if (!needed_[i] || done_[i]) continue;
    const ElementaryDifferential& d = table.differentials[i];
    switch (d.kind) {
      case K::gradient: objective_.value_and_gradient(theta, values_[i]); break;
      case K::hessian:
        if (const int t = fused_third_[i]; t >= 0) {  // H x and T[x, x] from one pass
          objective_.hessian_and_third_order(theta, values_[static_cast<std::size_t>(d.x)], values_[i],
                                             values_[static_cast<std::size_t>(t)]);
          done_[static_cast<std::size_t>(t)] = true;
        } else {
          objective_.hessian_vector(theta, values_[static_cast<std::size_t>(d.x)], values_[i]);
        }
        break;
      case K::third:
        objective_.third_order(theta, values_[static_cast<std::size_t>(d.x)], values_[static_cast<std::size_t>(d.y)],
                               values_[i]);
        break;
    }
  }
  out.setZero(theta.size());
  double power = 1.0;  // η^j
  for (int j = 0; j <= order_; ++j, power *= lr_)
    for (const CounterTermEntry& e : terms_[static_cast<std::size_t>(j)])
      out.noalias() += (power * e.coefficient) * values_[static_cast<std::size_t>(e.differential)];
}

}  // namespace eomlab
