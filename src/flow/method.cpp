#include "flow/method.hpp"

namespace eomlab {

Registry<MethodFactory>& method_registry() {
  static Registry<MethodFactory> registry("optimizer.method");
  register_builtins();
  return registry;
}

std::unique_ptr<Method> make_method(const std::string& name, const MethodContext& context) {
  return method_registry().at(name)(context);
}

const CounterTermTable& Method::counter_terms() const {
  static const CounterTermTable none;
  return none;
}

std::string state_signature(const MethodState& state) {
  std::string out = "vectors:";
  for (const auto& v : state.vectors) out += " " + v.first;
  out += "; scalars:";
  for (const auto& s : state.scalars) out += " " + s.first;
  return out;
}

}  // namespace eomlab
