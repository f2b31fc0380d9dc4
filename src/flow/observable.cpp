#include "flow/observable.hpp"

#include <algorithm>

namespace eomlab {

void Observable::values(const ObservationPoint&, const double* sums, double* out) const {
  std::copy(sums, sums + values_count(), out);
}

Registry<ObservableEntry>& observable_registry() {
  static Registry<ObservableEntry> registry("observable");
  register_builtins();
  return registry;
}

std::vector<std::string> further_observable_names() {
  std::vector<std::string> out;
  const Registry<ObservableEntry>& registry = observable_registry();
  for (const std::string& name : registry.names())
    if (!registry.at(name).standard) out.push_back(name);
  return out;
}

Observables make_observables(const ObservableSetup& setup, TrajectoryRole role, const std::vector<std::string>& extra) {
  Observables out;
  auto take = [&](const ObservableEntry& entry) {
    for (auto& o : entry.make(setup, role)) out.push_back(std::move(o));
  };
  Registry<ObservableEntry>& registry = observable_registry();
  for (const std::string& name : registry.names())
    if (registry.at(name).standard) take(registry.at(name));
  for (const std::string& name : extra) {
    if (registry.at(name).standard) throw InputError("output.observables: '" + name + "' is always recorded");
    take(registry.at(name));
  }
  return out;
}

double local_component(const ParameterSum& s, const SliceExchange& slices, const Vector& x) {
  const Index lo = slices.begin(), hi = slices.end();
  double sum = 0;
  for (Index i = 0; i < s.count; ++i) {
    const Index at = s.offset + i * s.stride;
    if (at >= lo && at < hi) sum += x[at - lo];
  }
  return sum;
}

}  // namespace eomlab
