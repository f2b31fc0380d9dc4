// A discrete optimizer ("method", DESIGN.md §1.5, §2.6): the trajectory the flows are compared with.
// A method owns its state as named vectors (this rank's slices) and named scalars, which a checkpoint
// stores by name, so a method with a velocity needs no change of the checkpoint. It also names its
// continuous models: the counter-term table of its eomP and the largest stable lr·λ_max.
// Invariants: after start() or step(), theta(), gradient() and loss() describe the same iterate θ_k;
// save() then restore() on a method of the same settings continues with the same bits.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/config.hpp"
#include "diff/objective.hpp"
#include "flow/counter_terms.hpp"
#include "flow/registry.hpp"

namespace eomlab {

class Flow;
struct FlowContext;

struct MethodState {
  std::vector<std::pair<std::string, Vector>> vectors;
  std::vector<std::pair<std::string, double>> scalars;
};

class Method {
 public:
  virtual ~Method() = default;
  // Its registry name, which is also its trajectory's name in run files.
  virtual std::string name() const = 0;
  // How messages and run-file notes name it ("GD"; by default its name).
  virtual std::string label() const { return name(); }
  // Step 0 at θ0: evaluates what the first step needs.
  virtual void start(const Vector& theta0) = 0;
  // θ_k → θ_{k+1}, and the loss and gradient there.
  virtual void step() = 0;
  // θ_{k+1} without evaluating anything or changing the state.
  virtual void next_iterate(Vector& out) const = 0;
  virtual const Vector& theta() const = 0;
  virtual const Vector& gradient() const = 0;  // ∇L(θ_k)
  virtual double loss() const = 0;            // L(θ_k)
  virtual long evaluations() const = 0;       // gradient evaluations so far
  // The method is stable on a quadratic while lr·λ_max stays below this (2 for GD); for a preconditioned
  // method, while lr·λ_max(P⁻¹H) does.
  virtual double stable_lr_sharpness() const = 0;
  // Whether its step is θ − η P⁻¹(…) with a diagonal P > 0 that its state sets (RMSProp, Adam), so that
  // its stability depends on the preconditioned sharpness λ_max(P⁻¹H) (Cohen et al., "Adaptive gradient
  // methods at the edge of stability", 2022); then preconditioner() writes this rank's slice of the
  // diagonal of the P that the next step θ_k → θ_{k+1} divides by.
  virtual bool preconditioned() const { return false; }
  virtual void preconditioner(Vector& /*p*/) const {}
  // The counter terms of its eomP: F_P = f_1 + η f_2 + … + η^P f_{P+1}, and its start terms if it has
  // memory (a table that lives as long as the method: flows keep a reference). Default: none.
  virtual const CounterTermTable& counter_terms() const;
  // Its continuous models eom0 .. eom<max_model_order()> (DESIGN.md §1.5). By default the flows of the
  // counter-term table; a method whose models are not such a table overrides both.
  virtual int max_model_order() const { return counter_terms().max_order(); }
  virtual std::unique_ptr<Flow> make_model(int order, const FlowContext& context) const;
  virtual MethodState save() const = 0;
  virtual void restore(const MethodState& state) = 0;
  // The number of steps its models describe as one (1; sgd: an epoch of m minibatch steps): its flows
  // match it at multiples of the period, and records must fall on them (the study refuses other
  // optimizer.record_every and optimizer.steps).
  virtual long period() const { return 1; }
  // Whether loss() and gradient() come with each step (true), or cost a full-data evaluation that the
  // step does not need (sgd: its steps evaluate one batch each, and L and ∇L are evaluated when asked).
  // For the latter the driver checks divergence at records with loss() and between them with
  // step_loss(), a loss the last step evaluated anyway (sgd: the next batch's loss at θ_k).
  virtual bool loss_with_step() const { return true; }
  virtual double step_loss() const { return loss(); }
};

// What every method that steps on exact gradients keeps: θ_k, g(θ_k), L(θ_k) and the evaluations so
// far, saved as vectors "theta", "grad" and scalars "loss", "evaluations", followed by the method's own
// state (velocity, moments, step counters).
class GradientMethod : public Method {
 public:
  const Vector& theta() const override { return theta_; }
  const Vector& gradient() const override { return grad_; }
  double loss() const override { return loss_; }
  long evaluations() const override { return evaluations_; }

 protected:
  explicit GradientMethod(Objective& objective) : objective_(objective) {}
  // L and g at theta_ (one evaluation).
  void evaluate();
  MethodState state(std::vector<std::pair<std::string, Vector>> own_vectors = {},
                    std::vector<std::pair<std::string, double>> own_scalars = {}) const;
  // Restores θ, g, L and the count; the method's own state follows at vectors[2], scalars[2].
  void restore_iterate(const MethodState& s);

  Objective& objective_;
  Vector theta_, grad_;
  double loss_ = 0;
  long evaluations_ = 0;
};

struct MethodContext {
  Objective& objective;
  double lr;
  MethodSettings settings = {};  // its hyperparameters (each method reads its own)
  std::uint64_t seed = 0;        // the run's seed (sgd draws its batch orders from it)
};

using MethodFactory = std::function<std::unique_ptr<Method>(const MethodContext&)>;

// An [optimizer] hyperparameter a method reads: a field of MethodSettings by its key ("momentum", "beta1",
// "beta2", "eps", "batch_size", "order"), and its default for that method (empty: the key is required).
struct MethodKey {
  std::string name;
  std::string fallback;
};

// A method as registered: its factory and the keys it reads, each a name of method_setting_keys (else
// Error: a misspelt key would leave the method with MethodSettings' default). In a config, a key of
// other methods is bad input naming those.
struct MethodEntry {
  template <class F>
  MethodEntry(F factory, std::vector<MethodKey> keys = {}) : make(std::move(factory)), reads(checked(std::move(keys))) {}  // NOLINT: implicit
  MethodFactory make;
  std::vector<MethodKey> reads;

 private:
  static std::vector<MethodKey> checked(std::vector<MethodKey> keys);
};
Registry<MethodEntry>& method_registry();
std::unique_ptr<Method> make_method(const std::string& name, const MethodContext& context);
// The key `key` of `method` as registered (null if the method does not read it), and the registered
// methods that read it, in the order of registration.
const MethodKey* method_key(const std::string& method, const std::string& key);
std::vector<std::string> methods_reading(const std::string& key);
// Whether `name` is one of method_setting_keys, and those keys as a message lists them: "momentum, beta1, ..".
bool is_method_setting_key(const std::string& name);
std::string method_setting_keys_text();

// The names of a method's state as save() gives them, "vectors: a, b; scalars: c" (to compare checkpoints).
std::string state_signature(const MethodState& state);

}  // namespace eomlab
