// The synchronized driver: runs a discrete method (GD by default) and each requested flow side by side
// and hands a Record to a sink at every record time t_k = k·lr (k a multiple of record_every, plus the
// last step; record 0 is the initial state). Trajectory 0 is the method's; flows follow in the order
// requested. What a record holds is the registry's observables (flow/observable.hpp), all reduced in one
// collective per record.
//
// Outcomes are results, not exceptions: if the method's loss or parameters stop being finite, or its
// loss exceeds divergence_factor times its loss at θ0, the run is `diverged` (that record is still
// written, then the run stops at once); a flow whose integration fails is marked failed and its later
// records hold NaN while the method and the other flows go on.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/slices.hpp"
#include "diff/objective.hpp"
#include "flow/dop853.hpp"
#include "flow/method.hpp"
#include "flow/observable_layout.hpp"

namespace eomlab {

// The series of one trajectory, in the order of its record values.
struct SeriesShape {
  std::string name;  // under /observables/<trajectory>/
  Index width = 0;   // 0: one number per record
};

struct TrajectoryLayout {
  std::string name;
  std::vector<SeriesShape> series;
};

using RecordLayout = std::vector<TrajectoryLayout>;  // the method's trajectory first, then the flows

struct TrajectoryRecord {
  const Vector* theta = nullptr;  // this rank's slice
  std::vector<double> values;     // every series' values, concatenated in layout order
};

struct Record {
  long step = 0;
  double time = 0;
  const RecordLayout* layout = nullptr;
  std::vector<TrajectoryRecord> trajectories;
  // The values of series `name` of trajectory t, or nullptr when it has none (also before the first
  // record, when no values are there yet).
  const double* find(std::size_t t, const std::string& name) const;
};

class RecordSink {
 public:
  virtual ~RecordSink() = default;
  virtual void append(const Record& record) = 0;
};

enum class RunStatus { complete, diverged, interrupted };
const char* to_string(RunStatus s);

struct TrajectorySummary {
  std::string name;           // the method's, then each flow's
  std::string status = "ok";  // ok, or why the integration failed
  long evaluations = 0;       // gradient evaluations (method) or field evaluations (flows)
  long accepted_steps = 0, rejected_steps = 0;
  double wall_seconds = 0;
  double final_loss = 0, final_distance = 0;
};

// What a method's edge of stability is judged by (Method::stable_lr_sharpness): lr·λ_max(H), or for a
// preconditioned method lr·λ_max(P⁻¹H), against its limit.
struct StabilityLimit {
  std::string method;  // Method::label()
  bool preconditioned = false;
  double limit = 2;
  // "lr*sharpness" or "lr*preconditioned_sharpness"
  std::string measure() const { return preconditioned ? "lr*preconditioned_sharpness" : "lr*sharpness"; }
  // "<measure> > <limit> from step <step>: the EoM cannot describe <method> there" (limit to 6 digits)
  std::string crossing(long step) const;
};

struct RunOutcome {
  RunStatus status = RunStatus::complete;
  long last_step = 0;
  double max_lr_sharpness = 0;    // max over the method's records of lr·λ_max (when measured)
  double max_lr_preconditioned_sharpness = 0;  // of lr·λ_max(P⁻¹H) (a preconditioned method's, when measured)
  StabilityLimit stability;
  long first_unstable_step = -1;  // first record past the method's stability limit, or -1
  std::vector<TrajectorySummary> trajectories;
  std::int64_t peak_rank_memory_bytes = 0;  // peak resident memory of the run's ranks (max); set by the caller
};

// Everything needed to continue a run with the same bits, taken at the top of step `step` (the method
// at θ_step, records of the steps before it written). Vectors are this rank's slices. It is the run's
// state itself: the driver works on one and a checkpoint stores it.
struct DriverCheckpoint {
  long step = 0;
  long records = 0;
  MethodState method;
  double max_lr_sharpness = 0;
  double max_lr_preconditioned_sharpness = 0;
  long first_unstable_step = -1;
  Vector sharpness_start;
  Vector preconditioned_sharpness_start;  // empty unless the method is preconditioned
  struct Flow {
    Vector theta;
    bool failed = false;
    std::string status = "ok";
    long evaluations = 0;
    Dop853::State integrator;
  };
  std::vector<Flow> flows;
  std::vector<double> wall_seconds;  // per trajectory, the method's first
};

// Consulted by the driver at the top of every step; every rank of the run must answer alike.
class RunControl {
 public:
  virtual ~RunControl() = default;
  virtual bool stop_requested(long step) = 0;  // checkpoint, then end the run as `interrupted`
  virtual bool checkpoint_due(long step) = 0;
  virtual void save(const DriverCheckpoint& checkpoint) = 0;
  // Called once, at the first record past the method's stability limit, with the value measured there
  // (the run goes on).
  virtual void edge_of_stability(long /*step*/, double /*value*/, const StabilityLimit& /*limit*/) {}
};

struct DriverSettings {
  std::string method = OptimizerConfig{}.method;  // a method registry name
  MethodSettings method_settings;                 // its hyperparameters
  std::uint64_t seed = 0;                         // the run's seed (sgd's batch orders)
  bool start_correction = true;                   // flows start from the method's θ0* (DESIGN.md §1.5)
  double lr = 0;
  long steps = 0;
  long record_every = 1;
  double divergence_factor = 1e6;  // diverged once L(θ_k) > divergence_factor · L(θ0) (L(θ0) > 0)
  std::vector<std::string> flows;  // flow registry names
  IntegratorSettings integrator;
  bool rates = false;                    // the rate observables of DESIGN.md §3.8
  std::vector<std::string> observables;  // non-standard observables by name
};

// The trajectories and series a run with these settings records (what a run file is made from).
RecordLayout record_layout(const DriverSettings& settings, const ObservableLayout& observables,
                           const SliceExchange& slices);

// What a record is doing while it takes long: integrating `flow` at time t towards the record's time, or
// (flow null) measuring the sharpness.
struct RecordWork {
  const std::string* flow = nullptr;
  double t = 0, record_time = 0;
};

// Called after every record with (step, steps, nullptr), and while a record's flows integrate or its
// sharpness is measured, between their steps, with (the last step recorded, steps, what it does), so a
// long record shows progress too.
using ProgressFn = std::function<void(long, long, const RecordWork*)>;

// θ0 and every vector of the run are this rank's slices of `slices`; every measurement is reduced
// over the run's ranks, so all of them take identical steps and see identical records.
// With `resume_from`, the run continues from that checkpoint instead of θ0.
RunOutcome run_synchronized(Objective& objective, const Vector& theta0, const DriverSettings& settings,
                            const ObservableLayout& observables, const SliceExchange& slices,
                            RecordSink& sink, const ProgressFn& progress = {}, RunControl* control = nullptr,
                            const DriverCheckpoint* resume_from = nullptr);

}  // namespace eomlab
