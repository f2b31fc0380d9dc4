// The synchronized driver: runs GD and each requested flow side by side and hands a Record to a sink
// at every record time t_k = k·lr (k a multiple of record_every, plus the last step; record 0 is the
// initial state). Trajectory 0 is always GD; flows follow in the order requested.
//
// Outcomes are results, not exceptions: if GD's loss or parameters stop being finite, or its loss
// exceeds divergence_factor times its loss at θ0, the run is `diverged` (that record is still written,
// then the run stops at once); a flow whose integration fails is marked failed and its later records
// hold NaN while GD and the other flows go on.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/slices.hpp"
#include "diff/objective.hpp"
#include "flow/dop853.hpp"
#include "model/model.hpp"

namespace eomlab {

// What is measured at every record beside loss and gradient norm.
struct ObservableLayout {
  std::vector<ParameterBlock> blocks;           // block_norms: ‖θ_A‖² of every W and b
  std::vector<ParameterBlock> scale_invariant;  // scale_invariant_norms: ‖θ_A‖² of each invariant block
  std::vector<ParameterSum> translation;        // translation_components: ⟨v, θ⟩ of each direction
  bool sharpness = false;                       // λ_max(H) along GD
};

// The layout of a model: every parameter block, its invariant blocks, and sharpness if asked for.
ObservableLayout observable_layout(const Model& model, bool sharpness);

struct TrajectoryState {
  const Vector* theta = nullptr;  // this rank's slice
  double loss = 0;
  double grad_norm = 0;
  double distance_to_gd = 0;  // 0 for GD itself
  std::vector<double> block_norms;
  std::vector<double> scale_invariant_norms;
  std::vector<double> translation_components;
  double sharpness = 0;  // GD only, when measured
};

struct Record {
  long step = 0;
  double time = 0;
  std::vector<TrajectoryState> trajectories;  // [0] = gd, then flows
};

class RecordSink {
 public:
  virtual ~RecordSink() = default;
  virtual void append(const Record& record) = 0;
};

enum class RunStatus { complete, diverged, interrupted };
const char* to_string(RunStatus s);

struct TrajectorySummary {
  std::string name;          // gd, gf, eom1, ...
  std::string status = "ok";  // ok, or why the integration failed
  long evaluations = 0;       // gradient evaluations (gd) or field evaluations (flows)
  long accepted_steps = 0, rejected_steps = 0;
  double wall_seconds = 0;
  double final_loss = 0, final_distance = 0;
};

struct RunOutcome {
  RunStatus status = RunStatus::complete;
  long last_step = 0;
  double max_lr_sharpness = 0;   // max over GD records of lr·λ_max (when measured)
  long first_unstable_step = -1;  // first GD record with lr·λ_max > 2, or -1
  std::vector<TrajectorySummary> trajectories;
  std::int64_t peak_rank_memory_bytes = 0;  // peak resident memory of the run's ranks (max); set by the caller
};

// Everything needed to continue a run with the same bits, taken at the top of GD step `step`
// (θ_gd = θ_step, records of the steps before it written). Vectors are this rank's slices.
struct DriverCheckpoint {
  long step = 0;
  long records = 0;
  Vector gd, grad;
  double loss = 0;
  long gd_evaluations = 0;
  double max_lr_sharpness = 0;
  long first_unstable_step = -1;
  Vector sharpness_start;
  struct Flow {
    Vector theta;
    bool failed = false;
    std::string status = "ok";
    long evaluations = 0;
    Dop853::State integrator;
  };
  std::vector<Flow> flows;
  std::vector<double> wall_seconds;  // per trajectory, gd first
};

// Consulted by the driver at the top of every GD step; every rank of the run must answer alike.
class RunControl {
 public:
  virtual ~RunControl() = default;
  virtual bool stop_requested(long step) = 0;    // checkpoint, then end the run as `interrupted`
  virtual bool checkpoint_due(long step) = 0;
  virtual void save(const DriverCheckpoint& checkpoint) = 0;
  // Called once, at the first GD record with lr·λ_max > 2 (the run goes on).
  virtual void edge_of_stability(long /*step*/, double /*lr_sharpness*/) {}
};

struct DriverSettings {
  double lr = 0;
  long steps = 0;
  long record_every = 1;
  double divergence_factor = 1e6;  // GD has diverged once L(θ_k) > divergence_factor · L(θ0) (L(θ0) > 0)
  std::vector<FlowKind> flows;
  IntegratorSettings integrator;
};

// Called after every record with (step, steps).
using ProgressFn = std::function<void(long, long)>;

// θ0 and every vector of the run are this rank's slices of `slices`; every measurement is reduced
// over the run's ranks, so all of them take identical steps and see identical records.
// With `resume_from`, the run continues from that checkpoint instead of θ0.
RunOutcome run_synchronized(Objective& objective, const Vector& theta0, const DriverSettings& settings,
                            const ObservableLayout& observables, const SliceExchange& slices,
                            RecordSink& sink, const ProgressFn& progress = {}, RunControl* control = nullptr,
                            const DriverCheckpoint* resume_from = nullptr);

}  // namespace eomlab
