// The one place where eomlab's own methods, flows and observables are registered (one line each).
// Code outside the library registers its own kinds the same way, before a study starts.
#include <atomic>
#include <mutex>

#include "flow/flow.hpp"
#include "flow/method.hpp"
#include "flow/observable.hpp"

namespace eomlab {

std::unique_ptr<Method> make_gradient_descent(const MethodContext&);
std::unique_ptr<Method> make_heavy_ball(const MethodContext&);
std::unique_ptr<Method> make_nesterov(const MethodContext&);
std::unique_ptr<Method> make_rmsprop(const MethodContext&);
std::unique_ptr<Method> make_adam(const MethodContext&);
std::unique_ptr<Method> make_sgd(const MethodContext&);
std::unique_ptr<Flow> make_gradient_flow(const FlowContext&);
FlowFactory eom_flow_of_order(int order);
Observables make_loss(const ObservableSetup&, TrajectoryRole);
Observables make_grad_norm(const ObservableSetup&, TrajectoryRole);
Observables make_distance(const ObservableSetup&, TrajectoryRole);
Observables make_block_norms(const ObservableSetup&, TrajectoryRole);
Observables make_scale_invariant_norms(const ObservableSetup&, TrajectoryRole);
Observables make_translation_components(const ObservableSetup&, TrajectoryRole);
Observables make_sharpness(const ObservableSetup&, TrajectoryRole);
Observables make_preconditioned_sharpness(const ObservableSetup&, TrajectoryRole);
Observables make_block_grad_norms(const ObservableSetup&, TrajectoryRole);
Observables make_rates(const ObservableSetup&, TrajectoryRole);

void register_builtins() {
  // Threads may ask a registry first at once (the Python module: a study in one, a flow field in another).
  // The first caller registers under the lock; the registries' accessors it calls come back here and
  // return at once (started), and other callers wait for the lock, then return, with every kind registered.
  static std::atomic<bool> done{false};
  if (done.load(std::memory_order_acquire)) return;
  static std::recursive_mutex guard;
  const std::lock_guard<std::recursive_mutex> one_thread(guard);
  static bool started = false;
  if (started) return;
  started = true;
  method_registry().add("gd", make_gradient_descent, "gradient descent");
  method_registry().add("heavy_ball", {make_heavy_ball, {{"momentum", "0.9"}}}, "SGD with momentum (torch.optim.SGD, dampening 0)");
  method_registry().add("nesterov", {make_nesterov, {{"momentum", "0.9"}}},
                        "SGD with Nesterov momentum (torch.optim.SGD, nesterov=True)");
  method_registry().add("rmsprop", {make_rmsprop, {{"beta2", "0.99"}, {"eps", "1e-8"}}}, "RMSProp (torch.optim.RMSprop, alpha = beta2)");
  method_registry().add("adam", {make_adam, {{"beta1", "0.9"}, {"beta2", "0.999"}, {"eps", "1e-8"}}}, "Adam (torch.optim.Adam)");
  method_registry().add("sgd", {make_sgd, {{"batch_size", ""}, {"order", "fixed"}}},
                        "minibatch SGD (torch.optim.SGD over shuffled batches of optimizer.batch_size)");

  flow_registry().add("gf", make_gradient_flow, "gradient flow dθ/dt = −g");
  for (int order = 0; order <= counter_term_table().max_order(); ++order)
    flow_registry().add("eom" + std::to_string(order), eom_flow_of_order(order), "the method's EoM of this order");

  observable_registry().add("loss", {make_loss});
  observable_registry().add("grad_norm", {make_grad_norm});
  observable_registry().add("distance", {make_distance});
  observable_registry().add("block_norms", {make_block_norms});
  observable_registry().add("scale_invariant_norms", {make_scale_invariant_norms});
  observable_registry().add("translation_components", {make_translation_components});
  observable_registry().add("sharpness", {make_sharpness});
  observable_registry().add("preconditioned_sharpness", {make_preconditioned_sharpness});
  observable_registry().add("block_grad_norms", {make_block_grad_norms});
  observable_registry().add("rates", {make_rates});
  done.store(true, std::memory_order_release);
}

}  // namespace eomlab
