// gf and the method's eomP (DESIGN.md §1.2, §1.5): F_P = f_1 + η f_2 + … + η^P f_{P+1} from a
// counter-term table. gf is plain gradient flow −g whatever the method; eomP uses the method's table.
#include "flow/flow.hpp"

namespace eomlab {
namespace {

class CounterTermFlow final : public Flow {
 public:
  CounterTermFlow(Objective& objective, const CounterTermTable& table, int order, double lr)
      : terms_(objective, table, order, lr) {}

 protected:
  void field(const Vector& theta, Vector& out) override { terms_(theta, out); }

 private:
  CounterTermEvaluator terms_;
};

}  // namespace

std::unique_ptr<Flow> make_gradient_flow(const FlowContext& c) {
  return std::make_unique<CounterTermFlow>(c.objective, counter_term_table(), 0, c.lr);
}

FlowFactory eom_flow_of_order(int order) {
  return [order](const FlowContext& c) -> std::unique_ptr<Flow> {
    const CounterTermTable& table = c.method.counter_terms();
    if (order > table.max_order())
      throw InputError("flows.kinds: method " + c.method.name() + " has no eom" + std::to_string(order) +
                       " (its models go up to eom" + std::to_string(table.max_order()) + ")");
    return std::make_unique<CounterTermFlow>(c.objective, table, order, c.lr);
  };
}

}  // namespace eomlab
