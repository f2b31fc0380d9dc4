// What is measured along every trajectory at every record (DESIGN.md §2.6, §3.4, §3.8): an observable
// has a name (its series under /observables/<trajectory>/), a width per record (0: one number, [R];
// w > 0: [R, w]) and local sums over this rank's slices, which the driver reduces over the run's ranks
// in one collective per record; values() then turns the reduced sums into what is recorded.
// Each observable is one file and one registration line (flow/registrations.cpp); a factory returns the
// observables it makes for one trajectory (none where it does not apply).
#pragma once
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "core/slices.hpp"
#include "flow/observable_layout.hpp"
#include "flow/registry.hpp"

namespace eomlab {

enum class TrajectoryRole { discrete, flow };

// One trajectory at one record (vectors are this rank's slices).
struct ObservationPoint {
  const Vector& theta;
  const Vector& gradient;  // ∇L(θ)
  double loss = 0;
  const Vector* discrete = nullptr;  // the method's iterate θ_k (flows only)
  const Vector* next = nullptr;      // the method's θ_{k+1} (discrete trajectory, rates on)
  const std::vector<Vector>* fields = nullptr;  // each flow's F(θ_k), in flow order (discrete, rates on)
  double sharpness = 0;              // λ_max(H) at θ_k (discrete trajectory, when measured)
  double preconditioned_sharpness = 0;  // λ_max(P⁻¹H) with the method's next P (when measured)
};

// What the observables of a run may depend on.
struct ObservableSetup {
  const ObservableLayout& layout;  // parameter blocks, invariant blocks, translation components
  const SliceExchange& slices;
  double lr = 0;
  std::string discrete;             // the method's trajectory name
  std::vector<std::string> flows;   // in order
  bool rates = false;
};

class Observable {
 public:
  virtual ~Observable() = default;
  virtual std::string name() const = 0;
  virtual Index width() const { return 0; }
  // How many local sums it needs (0: its values need no reduction).
  virtual Index sum_count() const { return values_count(); }
  virtual void local_sums(const ObservationPoint& point, double* sums) const = 0;
  // out[0 .. values_count()) from the reduced sums; by default the sums themselves.
  virtual void values(const ObservationPoint& point, const double* sums, double* out) const;
  Index values_count() const { return width() == 0 ? 1 : width(); }
};

using Observables = std::vector<std::unique_ptr<Observable>>;
using ObservableFactory = std::function<Observables(const ObservableSetup&, TrajectoryRole)>;

// `standard` observables are made for every run; the others only when named in output.observables.
struct ObservableEntry {
  ObservableFactory make;
  bool standard = true;
};
Registry<ObservableEntry>& observable_registry();
// The names output.observables may give: the registered observables that are not standard, in order.
std::vector<std::string> further_observable_names();

// The observables of one trajectory: the standard ones in registration order, then `extra` by name.
Observables make_observables(const ObservableSetup& setup, TrajectoryRole role, const std::vector<std::string>& extra);

// f(start, length) of the part of block b in this rank's slice (slice-local start), or 0 if none.
template <class F>
double local_block_sum(const ParameterBlock& b, const SliceExchange& slices, F&& f) {
  const Index lo = std::max(b.offset, slices.begin()), hi = std::min(b.offset + b.size, slices.end());
  return hi > lo ? f(lo - slices.begin(), hi - lo) : 0.0;
}

// Σ_k x[offset + k·stride] over the terms of s in this rank's slice.
double local_component(const ParameterSum& s, const SliceExchange& slices, const Vector& x);

}  // namespace eomlab
