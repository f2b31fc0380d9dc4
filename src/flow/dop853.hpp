// Adaptive explicit Runge-Kutta integrator of Dormand and Prince, order 8 with 5th- and 3rd-order
// error estimators and a 7th-order dense output (Hairer, Nørsett, Wanner, Solving ODEs I, §II.10),
// for autonomous systems dy/dt = f(y).
//
// The integrator takes its natural steps and answers y(t) at any requested time inside the last step
// from the dense output, so record times cost no extra step cuts; the 3 extra stages of the dense
// output are evaluated at most once per step. Error norms are sums over the vector's entries passed
// through `vector_reducer`, so a vector sliced over ranks gets the same step sizes on every rank;
// `global_size` is the length of the whole vector.
#pragma once
#include <array>
#include <functional>
#include <limits>
#include <vector>

#include "core/reducer.hpp"
#include "core/types.hpp"

namespace eomlab {

struct IntegratorSettings {
  double rtol = 1e-10;
  double atol = 1e-12;
  long max_steps = 0;  // attempted steps (accepted + rejected) before giving up; 0: no limit
};

class Dop853 {
 public:
  using Field = std::function<void(const Vector& y, Vector& dydt)>;
  enum class Status { ok, step_size_underflow, not_finite, step_limit, interrupted };

  Dop853(Field field, IntegratorSettings tol, const Reducer& vector_reducer, Index global_size);

  // Starts at (t0, y0): evaluates f(y0) and chooses the first step size.
  void start(double t0, const Vector& y0);
  // Steps are cut so that one ends exactly at t_end (the last time that will be asked for): the final
  // state then comes from a step, not from the dense output. Part of the integrator's settings.
  void set_end_time(double t_end) { t_end_ = t_end; }
  // Integrates to time t (t at or after the previously requested time) and writes y(t).
  // On failure y is left unchanged and the status says why; later calls keep failing.
  // `interrupt`, asked before every step, may end the call early with Status::interrupted: y is left
  // unchanged and the integrator is at the end of an accepted step, ready to continue (or be exported).
  Status advance_to(double t, Vector& y, const std::function<bool()>& interrupt = {});
  // The field changed at the current time (a piecewise field's next piece): evaluates the first stage
  // again at the current state and forgets the last step's dense output (the step size is kept as the
  // first guess). Later requests must lie at or after the current time.
  void field_changed();

  // Everything that determines the integrator's future: scalars (times, step sizes, counters, flags)
  // and vectors (state, stages, dense output), each of the length of y. Importing what was exported
  // continues the integration with the same bits.
  struct State {
    std::vector<double> scalars;
    std::vector<Vector> vectors;
  };
  State export_state() const;
  void import_state(const State& state);
  static constexpr int exported_vectors = 2 + 16 + 7;  // y, y_old, the 16 stages, the 7 dense coefficients

  double time() const { return t_; }
  double step_size() const { return h_; }
  long accepted_steps() const { return accepted_; }
  long rejected_steps() const { return rejected_; }

 private:
  static constexpr int n_stages = 12;
  static constexpr int n_stages_dense = 16;

  Field field_;
  IntegratorSettings tol_;
  const Reducer& reducer_;
  double global_size_;
  Status status_ = Status::ok;

  double t_ = 0, t_old_ = 0, h_ = 0, h_old_ = 0;
  double t_end_ = std::numeric_limits<double>::infinity();
  bool dense_ready_ = false;
  bool last_rejected_ = false;
  long accepted_ = 0, rejected_ = 0;
  Vector y_, y_old_, y_new_, stage_, err5_, err3_;
  std::array<Vector, n_stages_dense> k_;  // k_[0] = f(y_old) (FSAL), k_[12] = f(y_new)
  std::array<Vector, 7> dense_;
  static_assert(exported_vectors == 2 + n_stages_dense + 7, "export_state writes y, y_old, k_ and dense_");

  double initial_step();
  double error_norm(double h);
  void take_step();
  void prepare_dense_output();
  void dense_output(double t, Vector& y) const;
  double rms_scaled(const Vector& v, const Vector& y) const;
};

}  // namespace eomlab
