#include "flow/driver.hpp"

#include <chrono>
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "core/error.hpp"
#include "diff/sharpness.hpp"
#include "flow/vector_field.hpp"

namespace eomlab {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

const char* to_string(Dop853::Status s) {
  switch (s) {
    case Dop853::Status::ok: return "ok";
    case Dop853::Status::step_size_underflow: return "failed: step size underflow";
    case Dop853::Status::not_finite: return "failed: state not finite";
    case Dop853::Status::step_limit: return "failed: step limit flows.max_steps reached (stiff flow?)";
    case Dop853::Status::interrupted: return "interrupted";
  }
  return "failed";
}

struct FlowTrack {
  VectorField field;
  Dop853 integrator;
  Vector theta;
  bool failed = false;
  FlowTrack(Objective& objective, FlowKind kind, double lr, const DriverSettings& s, const SliceExchange& slices)
      : field(objective, kind, lr),
        integrator([this](const Vector& y, Vector& dy) { field(y, dy); }, s.integrator, slices, slices.global_size()) {}
};

class Observer {
 public:
  Observer(const ObservableLayout& layout, const SliceExchange& slices) : layout_(layout), slices_(slices) {}

  void fill(TrajectoryState& out, const Vector& theta, double loss, const Vector& grad, const Vector* gd) {
    out.theta = &theta;
    const std::size_t nb = layout_.blocks.size(), ns = layout_.scale_invariant.size(), nt = layout_.translation.size();
    // One reduction for every measurement of this trajectory.
    sums_.assign(nb + ns + nt + 2, 0.0);
    std::size_t k = 0;
    for (const ParameterBlock& b : layout_.blocks) sums_[k++] = local_squared_norm(theta, b);
    for (const ParameterBlock& b : layout_.scale_invariant) sums_[k++] = local_squared_norm(theta, b);
    for (const ParameterSum& s : layout_.translation) {
      // The terms θ[offset + i·stride] that fall in this rank's slice.
      const Index lo = slices_.begin(), hi = slices_.end();
      double sum = 0;
      for (Index i = 0; i < s.count; ++i) {
        const Index at = s.offset + i * s.stride;
        if (at >= lo && at < hi) sum += theta[at - lo];
      }
      sums_[k++] = sum;
    }
    sums_[k++] = grad.squaredNorm();
    sums_[k++] = gd ? (theta - *gd).squaredNorm() : 0.0;
    slices_.sum_in_place(sums_.data(), sums_.size());
    auto next = sums_.begin();
    out.block_norms.assign(next, next + static_cast<long>(nb));
    next += static_cast<long>(nb);
    out.scale_invariant_norms.assign(next, next + static_cast<long>(ns));
    next += static_cast<long>(ns);
    out.translation_components.assign(next, next + static_cast<long>(nt));
    out.loss = loss;
    out.grad_norm = std::sqrt(sums_[nb + ns + nt]);
    out.distance_to_gd = std::sqrt(sums_[nb + ns + nt + 1]);
  }

  void fill_failed(TrajectoryState& out, const Vector& theta) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    out.theta = &theta;
    out.loss = out.grad_norm = out.distance_to_gd = nan;
    out.block_norms.assign(layout_.blocks.size(), nan);
    out.scale_invariant_norms.assign(layout_.scale_invariant.size(), nan);
    out.translation_components.assign(layout_.translation.size(), nan);
  }

 private:
  // ‖θ_A‖² over the part of block A in this rank's slice.
  double local_squared_norm(const Vector& theta, const ParameterBlock& b) const {
    const Index lo = std::max(b.offset, slices_.begin()), hi = std::min(b.offset + b.size, slices_.end());
    return hi > lo ? theta.segment(lo - slices_.begin(), hi - lo).squaredNorm() : 0.0;
  }

  const ObservableLayout& layout_;
  const SliceExchange& slices_;
  std::vector<double> sums_;
};

}  // namespace

ObservableLayout observable_layout(const Model& model, bool sharpness) {
  return {model.blocks(), model.scale_invariant_blocks(), model.translation_components(), sharpness};
}

const char* to_string(RunStatus s) {
  switch (s) {
    case RunStatus::complete: return "complete";
    case RunStatus::diverged: return "diverged";
    case RunStatus::interrupted: return "interrupted";
  }
  return "?";
}

RunOutcome run_synchronized(Objective& objective, const Vector& theta0, const DriverSettings& settings,
                            const ObservableLayout& observables, const SliceExchange& slices,
                            RecordSink& sink, const ProgressFn& progress, RunControl* control,
                            const DriverCheckpoint* resume_from) {
  if (!(settings.lr > 0) || settings.steps <= 0 || settings.record_every <= 0 || !(settings.divergence_factor > 1))
    throw Error("run_synchronized: expected lr > 0, steps > 0, record_every > 0, divergence_factor > 1");
  const double lr = settings.lr;
  RunOutcome outcome;
  outcome.trajectories.push_back({"gd"});

  std::vector<std::unique_ptr<FlowTrack>> flows;
  for (FlowKind kind : settings.flows) {
    flows.push_back(std::make_unique<FlowTrack>(objective, kind, lr, settings, slices));
    flows.back()->integrator.set_end_time(static_cast<double>(settings.steps) * lr);
    outcome.trajectories.push_back({kind.name()});
  }
  Observer observer(observables, slices);
  SharpnessEstimator sharpness;
  Record record;
  record.trajectories.resize(1 + flows.size());
  Vector gd, grad, flow_grad;
  double loss = 0;
  long gd_evaluations = 0, first_step = 0;
  // Beyond this loss GD has diverged (inf when L(θ0) is not positive: only non-finite values count).
  double loss_limit = std::numeric_limits<double>::infinity();

  if (resume_from) {
    const DriverCheckpoint& c = *resume_from;
    if (c.flows.size() != flows.size() || c.wall_seconds.size() != outcome.trajectories.size())
      throw Error("run_synchronized: the checkpoint does not match the run's flows");
    first_step = c.step;
    gd = c.gd;
    grad = c.grad;
    loss = c.loss;
    gd_evaluations = c.gd_evaluations;
    outcome.max_lr_sharpness = c.max_lr_sharpness;
    outcome.first_unstable_step = c.first_unstable_step;
    if (c.sharpness_start.size() > 0) sharpness.set_warm_start(c.sharpness_start);
    for (std::size_t f = 0; f < flows.size(); ++f) {
      FlowTrack& track = *flows[f];
      track.theta = c.flows[f].theta;
      track.failed = c.flows[f].failed;
      track.field.set_evaluations(c.flows[f].evaluations);
      track.integrator.import_state(c.flows[f].integrator);
      outcome.trajectories[f + 1].status = c.flows[f].status;
    }
    for (std::size_t t = 0; t < c.wall_seconds.size(); ++t) outcome.trajectories[t].wall_seconds = c.wall_seconds[t];
    // L(θ0) again, by the same evaluation as a fresh run's first, so the verdicts are the same bits.
    Vector grad0;
    const double loss0 = objective.value_and_gradient(theta0, grad0);
    if (loss0 > 0) loss_limit = settings.divergence_factor * loss0;
  } else {
    for (std::size_t f = 0; f < flows.size(); ++f) {
      const auto t0 = Clock::now();
      flows[f]->theta = theta0;
      flows[f]->integrator.start(0.0, theta0);
      outcome.trajectories[f + 1].wall_seconds += seconds_since(t0);
    }
    const auto t0 = Clock::now();
    gd = theta0;
    loss = objective.value_and_gradient(gd, grad);
    gd_evaluations = 1;
    if (loss > 0) loss_limit = settings.divergence_factor * loss;
    outcome.trajectories[0].wall_seconds += seconds_since(t0);
  }

  auto checkpoint = [&](long k, long records) {
    DriverCheckpoint c;
    c.step = k;
    c.records = records;
    c.gd = gd;
    c.grad = grad;
    c.loss = loss;
    c.gd_evaluations = gd_evaluations;
    c.max_lr_sharpness = outcome.max_lr_sharpness;
    c.first_unstable_step = outcome.first_unstable_step;
    c.sharpness_start = sharpness.warm_start();
    for (std::size_t f = 0; f < flows.size(); ++f)
      c.flows.push_back({flows[f]->theta, flows[f]->failed, outcome.trajectories[f + 1].status,
                         flows[f]->field.evaluations(), flows[f]->integrator.export_state()});
    for (const TrajectorySummary& t : outcome.trajectories) c.wall_seconds.push_back(t.wall_seconds);
    control->save(c);
  };

  long records = resume_from ? resume_from->records : 0;
  for (long k = first_step;; ++k) {
    if (control && k > first_step) {
      const bool stop = control->stop_requested(k);
      if (stop || control->checkpoint_due(k)) checkpoint(k, records);
      if (stop) {
        outcome.status = RunStatus::interrupted;
        outcome.last_step = k;
        break;
      }
    }
    const bool gd_finite = std::isfinite(loss) && gd.allFinite() && grad.allFinite();
    const bool gd_diverged = !gd_finite || loss > loss_limit;
    const bool is_record = k % settings.record_every == 0 || k == settings.steps || gd_diverged;
    if (is_record) {
      record.step = k;
      record.time = static_cast<double>(k) * lr;
      // A stop signal is also taken between the integrator's steps and the sharpness's HVPs: the record
      // is abandoned and redone on resume (flows continue from where they were; the sharpness comes
      // last, so its warm start changes only once nothing of the record can be abandoned any more).
      const auto stop_now = [&] { return control && control->stop_requested(k); };
      bool abandoned = false;
      for (std::size_t f = 0; f < flows.size() && !abandoned; ++f) {
        FlowTrack& track = *flows[f];
        TrajectorySummary& summary = outcome.trajectories[f + 1];
        if (track.failed) continue;
        const auto t0 = Clock::now();
        const Dop853::Status status = track.integrator.advance_to(record.time, track.theta, stop_now);
        summary.wall_seconds += seconds_since(t0);
        if (status == Dop853::Status::interrupted) {
          abandoned = true;
        } else if (status != Dop853::Status::ok) {
          track.failed = true;
          summary.status = to_string(status);
          track.theta.setConstant(std::numeric_limits<double>::quiet_NaN());
        }
      }
      if (!abandoned && observables.sharpness) {
        double& s = record.trajectories[0].sharpness;
        s = std::numeric_limits<double>::quiet_NaN();
        if (gd_finite) {
          const SharpnessResult r = sharpness(objective, gd, slices, stop_now);
          abandoned = r.interrupted;
          s = r.value;
        }
        if (!abandoned && std::isfinite(s)) {
          outcome.max_lr_sharpness = std::max(outcome.max_lr_sharpness, lr * s);
          if (lr * s > 2.0 && outcome.first_unstable_step < 0) {
            outcome.first_unstable_step = k;
            if (control) control->edge_of_stability(k, lr * s);
          }
        }
      }
      if (abandoned) {
        checkpoint(k, records);
        outcome.status = RunStatus::interrupted;
        outcome.last_step = k;
        break;
      }
      observer.fill(record.trajectories[0], gd, loss, grad, nullptr);
      for (std::size_t f = 0; f < flows.size(); ++f) {
        FlowTrack& track = *flows[f];
        if (track.failed) {
          observer.fill_failed(record.trajectories[f + 1], track.theta);
        } else {
          const double flow_loss = objective.value_and_gradient(track.theta, flow_grad);
          observer.fill(record.trajectories[f + 1], track.theta, flow_loss, flow_grad, &gd);
        }
      }
      sink.append(record);
      ++records;
      outcome.last_step = k;
      if (progress) progress(k, settings.steps);
    }
    if (gd_diverged) {
      outcome.status = RunStatus::diverged;
      break;
    }
    if (k == settings.steps) break;
    const auto t0 = Clock::now();
    gd.noalias() -= lr * grad;
    loss = objective.value_and_gradient(gd, grad);
    ++gd_evaluations;
    outcome.trajectories[0].wall_seconds += seconds_since(t0);
  }

  outcome.trajectories[0].evaluations = gd_evaluations;
  outcome.trajectories[0].accepted_steps = outcome.last_step;
  outcome.trajectories[0].final_loss = record.trajectories[0].loss;
  for (std::size_t f = 0; f < flows.size(); ++f) {
    TrajectorySummary& s = outcome.trajectories[f + 1];
    s.evaluations = flows[f]->field.evaluations();
    s.accepted_steps = flows[f]->integrator.accepted_steps();
    s.rejected_steps = flows[f]->integrator.rejected_steps();
    s.final_loss = record.trajectories[f + 1].loss;
    s.final_distance = record.trajectories[f + 1].distance_to_gd;
  }
  return outcome;
}

}  // namespace eomlab
