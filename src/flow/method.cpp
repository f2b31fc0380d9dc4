#include "flow/method.hpp"

#include <algorithm>

namespace eomlab {

Registry<MethodEntry>& method_registry() {
  static Registry<MethodEntry> registry("optimizer.method");
  register_builtins();
  return registry;
}

std::unique_ptr<Method> make_method(const std::string& name, const MethodContext& context) {
  return method_registry().at(name).make(context);
}

std::vector<MethodKey> MethodEntry::checked(std::vector<MethodKey> keys) {
  for (const MethodKey& k : keys)
    if (!is_method_setting_key(k.name))
      throw Error("method registry: '" + k.name + "' is not an [optimizer] hyperparameter (" + method_setting_keys_text() + ")");
  return keys;
}

bool is_method_setting_key(const std::string& name) {
  return std::find(method_setting_keys.begin(), method_setting_keys.end(), name) != method_setting_keys.end();
}

std::string method_setting_keys_text() {
  std::string out;
  for (const std::string& name : method_setting_keys) out += (out.empty() ? "" : ", ") + name;
  return out;
}

const MethodKey* method_key(const std::string& method, const std::string& key) {
  for (const MethodKey& k : method_registry().at(method).reads)
    if (k.name == key) return &k;
  return nullptr;
}

std::vector<std::string> methods_reading(const std::string& key) {
  std::vector<std::string> out;
  for (const std::string& name : method_registry().names())
    if (method_key(name, key)) out.push_back(name);
  return out;
}

const CounterTermTable& Method::counter_terms() const {
  static const CounterTermTable none;
  return none;
}

void GradientMethod::evaluate() {
  loss_ = objective_.value_and_gradient(theta_, grad_);
  ++evaluations_;
}

MethodState GradientMethod::state(std::vector<std::pair<std::string, Vector>> own_vectors,
                                  std::vector<std::pair<std::string, double>> own_scalars) const {
  MethodState s{{{"theta", theta_}, {"grad", grad_}}, {{"loss", loss_}, {"evaluations", static_cast<double>(evaluations_)}}};
  for (auto& v : own_vectors) s.vectors.push_back(std::move(v));
  for (auto& x : own_scalars) s.scalars.push_back(std::move(x));
  return s;
}

void GradientMethod::restore_iterate(const MethodState& s) {
  theta_ = s.vectors.at(0).second;
  grad_ = s.vectors.at(1).second;
  loss_ = s.scalars.at(0).second;
  evaluations_ = static_cast<long>(s.scalars.at(1).second);
}

std::string state_signature(const MethodState& state) {
  std::string out = "vectors:";
  for (const auto& v : state.vectors) out += " " + v.first;
  out += "; scalars:";
  for (const auto& s : state.scalars) out += " " + s.first;
  return out;
}

}  // namespace eomlab
