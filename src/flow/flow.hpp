// A continuous trajectory integrated beside the discrete method (DESIGN.md §2.6): a named vector
// field dθ/dt = F(θ) that counts its evaluations, and the point it starts from (θ0, or a method's
// corrected start θ0* of §1.5). The integrator and the driver see only this.
#pragma once
#include <memory>
#include <string>

#include "diff/objective.hpp"
#include "flow/method.hpp"
#include "flow/registry.hpp"

namespace eomlab {

class Flow {
 public:
  virtual ~Flow() = default;
  // out = F(θ); one evaluation.
  void operator()(const Vector& theta, Vector& out) {
    ++evaluations_;
    field(theta, out);
  }
  virtual Vector start_point(const Vector& theta0) { return theta0; }
  long evaluations() const { return evaluations_; }
  void set_evaluations(long n) { evaluations_ = n; }
  // A field that changes at known times (sgd's eom1 under reshuffling: each epoch has its own batch
  // order) is piecewise: piece p holds for t in [p·s·η, (p+1)·s·η] with s = segment_steps(). The driver
  // integrates each piece separately (its steps end on the piece's boundaries), calls begin_segment(p)
  // before the first evaluation in piece p (without evaluating anything) and restarts the integrator
  // there. 0: one field for all times.
  virtual long segment_steps() const { return 0; }
  virtual void begin_segment(long /*piece*/) {}

 protected:
  virtual void field(const Vector& theta, Vector& out) = 0;

 private:
  long evaluations_ = 0;
};

// What a flow may depend on: the loss, the method it models and its learning rate.
struct FlowContext {
  Objective& objective;
  const Method& method;
  double lr;
  bool start_correction = true;  // start eomP from the method's θ0* (off: from θ0; DESIGN.md §1.5)
};

using FlowFactory = std::function<std::unique_ptr<Flow>(const FlowContext&)>;
Registry<FlowFactory>& flow_registry();
std::unique_ptr<Flow> make_flow(const std::string& name, const FlowContext& context);
// The same for method `method` made here (a method's counter-term table outlives the method).
std::unique_ptr<Flow> make_flow(const std::string& name, Objective& objective, const std::string& method, double lr,
                               const MethodSettings& settings = {});

}  // namespace eomlab
