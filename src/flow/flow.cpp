#include "flow/flow.hpp"

namespace eomlab {

Registry<FlowFactory>& flow_registry() {
  static Registry<FlowFactory> registry("flows.kinds");
  register_builtins();
  return registry;
}

std::unique_ptr<Flow> make_flow(const std::string& name, const FlowContext& context) {
  return flow_registry().at(name)(context);
}

std::unique_ptr<Flow> make_flow(const std::string& name, Objective& objective, const std::string& method, double lr,
                               const MethodSettings& settings) {
  const std::unique_ptr<Method> m = make_method(method, {objective, lr, settings});
  return make_flow(name, {objective, *m, lr});
}

}  // namespace eomlab
