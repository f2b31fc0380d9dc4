// gf and the method's eomP (DESIGN.md §1.2, §1.5): F_P = f_1 + η f_2 + … + η^P f_{P+1} from a
// counter-term table, started from θ0* = θ0 + η s_1 + … + η^P s_P when the method has memory. gf is
// plain gradient flow −g from θ0 whatever the method; eomP is the method's model.
#include "flow/flow.hpp"

namespace eomlab {
namespace {

class CounterTermFlow final : public Flow {
 public:
  CounterTermFlow(Objective& objective, const CounterTermTable& table, int order, double lr, bool corrected_start)
      : objective_(objective), table_(table), order_(order), lr_(lr), terms_(objective, table, order, lr),
        corrected_start_(corrected_start && table.memory) {}

  Vector start_point(const Vector& theta0) override {
    if (!corrected_start_) return theta0;
    Vector shift;
    CounterTermEvaluator(objective_, table_, order_, lr_, CounterTermEvaluator::Part::start)(theta0, shift);
    return theta0 + shift;
  }

 protected:
  void field(const Vector& theta, Vector& out) override { terms_(theta, out); }

 private:
  Objective& objective_;
  const CounterTermTable& table_;
  int order_;
  double lr_;
  CounterTermEvaluator terms_;
  bool corrected_start_;
};

}  // namespace

std::unique_ptr<Flow> Method::make_model(int order, const FlowContext& c) const {
  return std::make_unique<CounterTermFlow>(c.objective, counter_terms(), order, c.lr, c.start_correction);
}

std::unique_ptr<Flow> make_gradient_flow(const FlowContext& c) {
  return std::make_unique<CounterTermFlow>(c.objective, counter_term_table(), 0, c.lr, false);
}

FlowFactory eom_flow_of_order(int order) {
  return [order](const FlowContext& c) -> std::unique_ptr<Flow> {
    if (order > c.method.max_model_order())
      throw InputError("flows.kinds: method " + c.method.name() + " has no eom" + std::to_string(order) +
                       " (its models go up to eom" + std::to_string(c.method.max_model_order()) + ")");
    return c.method.make_model(order, c);
  };
}

}  // namespace eomlab
