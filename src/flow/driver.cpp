#include "flow/driver.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <limits>
#include <memory>
#include <sstream>

#include "core/error.hpp"
#include "diff/sharpness.hpp"
#include "flow/flow.hpp"
#include "flow/observable.hpp"

namespace eomlab {
namespace {

using Clock = std::chrono::steady_clock;
constexpr double nan = std::numeric_limits<double>::quiet_NaN();

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

// The method's trajectory is named after the method.
ObservableSetup observable_setup(const DriverSettings& s, const ObservableLayout& layout, const SliceExchange& slices) {
  return {layout, slices, s.lr, s.method, s.flows, s.rates};
}

// The observables of every trajectory and one buffer for all their sums (one reduction per record).
class Observation {
 public:
  Observation(const ObservableSetup& setup, const DriverSettings& s) {
    trajectories_.push_back(make_observables(setup, TrajectoryRole::discrete, s.observables));
    for (std::size_t f = 0; f < s.flows.size(); ++f)
      trajectories_.push_back(make_observables(setup, TrajectoryRole::flow, s.observables));
    for (std::size_t t = 0; t < trajectories_.size(); ++t) {
      layout_.push_back({t == 0 ? setup.discrete : s.flows[t - 1], {}});
      for (const auto& o : trajectories_[t]) layout_.back().series.push_back({o->name(), o->width()});
    }
  }
  const RecordLayout& layout() const { return layout_; }

  void clear() { sums_.clear(); }
  // Appends trajectory t's local sums (zeros when `point` is null: a failed flow).
  void add_local_sums(std::size_t t, const ObservationPoint* point) {
    for (const auto& o : trajectories_[t]) {
      const std::size_t at = sums_.size();
      sums_.resize(at + static_cast<std::size_t>(o->sum_count()), 0.0);
      if (point) o->local_sums(*point, sums_.data() + at);
    }
  }
  void reduce(const SliceExchange& slices) { slices.sum_in_place(sums_.data(), sums_.size()); }
  // Trajectory t's values from the reduced sums, in the order added (NaN for a failed flow).
  const double* take_values(std::size_t t, const ObservationPoint* point, std::vector<double>& out) {
    out.clear();
    for (const auto& o : trajectories_[t]) {
      const std::size_t at = out.size();
      out.resize(at + static_cast<std::size_t>(o->values_count()), nan);
      if (point) o->values(*point, sums_.data() + next_, out.data() + at);
      next_ += static_cast<std::size_t>(o->sum_count());
    }
    return out.data();
  }
  void rewind() { next_ = 0; }

 private:
  std::vector<Observables> trajectories_;
  RecordLayout layout_;
  std::vector<double> sums_;
  std::size_t next_ = 0;
};

struct FlowTrack {
  std::unique_ptr<Flow> flow;
  Dop853 integrator;
  Vector theta;
  bool failed = false;
  FlowTrack(std::unique_ptr<Flow> f, const DriverSettings& s, const SliceExchange& slices)
      : flow(std::move(f)),
        integrator([this](const Vector& y, Vector& dy) { (*flow)(y, dy); }, s.integrator, slices, slices.global_size()) {}
};

// One run: the method, the flows, the sharpness and the observables, and the loop over steps.
class SynchronizedRun {
 public:
  SynchronizedRun(Objective& objective, const DriverSettings& s, const ObservableLayout& layout,
                  const SliceExchange& slices, RunControl* control)
      : objective_(objective), s_(s), layout_(layout), slices_(slices), control_(control),
        method_(make_method(s.method, {objective, s.lr, s.method_settings, s.seed})),
        observation_(observable_setup(s, layout, slices), s) {
    if (!(s.lr > 0) || s.steps <= 0 || s.record_every <= 0 || !(s.divergence_factor > 1))
      throw Error("run_synchronized: expected lr > 0, steps > 0, record_every > 0, divergence_factor > 1");
    if (s.record_every % method_->period() != 0 || s.steps % method_->period() != 0)
      throw Error("run_synchronized: expected record_every and steps multiples of the method's period");
    outcome_.trajectories.push_back({s.method});
    outcome_.stability = {method_->label(), layout.preconditioned_sharpness, method_->stable_lr_sharpness()};
    if (layout.sharpness && layout.preconditioned_sharpness != method_->preconditioned())
      throw Error("run_synchronized: expected a preconditioned sharpness in the layout exactly when the method " +
                  s.method + " is preconditioned");
    for (const std::string& name : s.flows) {
      flows_.push_back(std::make_unique<FlowTrack>(make_flow(name, {objective, *method_, s.lr, s.start_correction}), s, slices));
      flows_.back()->integrator.set_end_time(static_cast<double>(s.steps) * s.lr);
      outcome_.trajectories.push_back({name});
      if (s.rates) rate_fields_.push_back(make_flow(name, {objective, *method_, s.lr, s.start_correction}));
    }
    record_.layout = &observation_.layout();
    record_.trajectories.resize(1 + flows_.size());
    fields_.resize(rate_fields_.size());
  }

  void start(const Vector& theta0) {
    for (std::size_t f = 0; f < flows_.size(); ++f) {
      const auto t0 = Clock::now();
      if (flows_[f]->flow->segment_steps() > 0) flows_[f]->flow->begin_segment(0);
      flows_[f]->theta = flows_[f]->flow->start_point(theta0);
      flows_[f]->integrator.start(0.0, flows_[f]->theta);
      outcome_.trajectories[f + 1].wall_seconds += seconds_since(t0);
    }
    const auto t0 = Clock::now();
    method_->start(theta0);
    set_loss_limit(method_->loss());
    outcome_.trajectories[0].wall_seconds += seconds_since(t0);
  }

  void resume(const DriverCheckpoint& c, const Vector& theta0) {
    if (c.flows.size() != flows_.size() || c.wall_seconds.size() != outcome_.trajectories.size())
      throw Error("run_synchronized: the checkpoint does not match the run's flows");
    first_step_ = c.step;
    records_ = c.records;
    method_->restore(c.method);
    outcome_.max_lr_sharpness = c.max_lr_sharpness;
    outcome_.max_lr_preconditioned_sharpness = c.max_lr_preconditioned_sharpness;
    outcome_.first_unstable_step = c.first_unstable_step;
    if (c.sharpness_start.size() > 0) sharpness_.set_warm_start(c.sharpness_start);
    preconditioned_start_ = c.preconditioned_sharpness_start;
    for (std::size_t f = 0; f < flows_.size(); ++f) {
      FlowTrack& track = *flows_[f];
      track.theta = c.flows[f].theta;
      track.failed = c.flows[f].failed;
      track.flow->set_evaluations(c.flows[f].evaluations);
      track.integrator.import_state(c.flows[f].integrator);
      // A piecewise field is in the piece of the integrator's time (at a boundary the next piece's: the
      // integrator was restarted there before anything could interrupt it).
      if (track.flow->segment_steps() > 0) track.flow->begin_segment(segment_at(*track.flow, track.integrator.time()));
      outcome_.trajectories[f + 1].status = c.flows[f].status;
    }
    for (std::size_t t = 0; t < c.wall_seconds.size(); ++t) outcome_.trajectories[t].wall_seconds = c.wall_seconds[t];
    // L(θ0) again, by the same evaluation as a fresh run's first, so the verdicts are the same bits.
    Vector grad0;
    set_loss_limit(objective_.value_and_gradient(theta0, grad0));
  }

  RunOutcome run(RecordSink& sink, const ProgressFn& progress) {
    progress_ = &progress;
    for (long k = first_step_;; ++k) {
      if (control_ && k > first_step_ && stop_or_checkpoint(k)) break;
      const bool record_due = k % s_.record_every == 0 || k == s_.steps;
      // A method whose loss() costs a full evaluation is checked with its step's own loss between records.
      const bool full_check = record_due || method_->loss_with_step();
      const double loss = full_check ? method_->loss() : method_->step_loss();
      const bool finite =
          std::isfinite(loss) && (!full_check || (method_->theta().allFinite() && method_->gradient().allFinite()));
      const bool diverged = !finite || loss > loss_limit_;
      if (record_due || diverged) {
        if (!record(k, finite, sink)) break;
        if (progress) progress(k, s_.steps, nullptr);
      }
      if (diverged) {
        outcome_.status = RunStatus::diverged;
        break;
      }
      if (k == s_.steps) break;
      const auto t0 = Clock::now();
      method_->step();
      outcome_.trajectories[0].wall_seconds += seconds_since(t0);
    }
    return summary();
  }

 private:
  void set_loss_limit(double loss0) {
    // Beyond this loss the method has diverged (inf when L(θ0) is not positive: only non-finite values count).
    if (loss0 > 0) loss_limit_ = s_.divergence_factor * loss0;
  }

  // At the top of step k: checkpoints when due or asked to stop; true when the run ends here.
  bool stop_or_checkpoint(long k) {
    const bool stop = control_->stop_requested(k);
    if (stop || control_->checkpoint_due(k)) control_->save(checkpoint(k));
    if (stop) interrupt(k);
    return stop;
  }

  void interrupt(long k) {
    outcome_.status = RunStatus::interrupted;
    outcome_.last_step = k;
  }

  // The record of step k; false when a stop signal abandoned it (checkpointed, redone on resume).
  bool record(long k, bool finite, RecordSink& sink) {
    record_.step = k;
    record_.time = static_cast<double>(k) * s_.lr;
    // A stop signal is also taken between the integrator's steps and the sharpness's HVPs: the record
    // is abandoned and redone on resume (flows continue from where they were; the sharpness comes
    // last, so its warm start changes only once nothing of the record can be abandoned any more).
    const auto stop_now = [&] {
      within_record(record_.time);
      return control_ && control_->stop_requested(k);
    };
    if (!advance_flows(record_.time, stop_now) || !measure_sharpness(k, finite, stop_now)) {
      control_->save(checkpoint(k));
      interrupt(k);
      return false;
    }
    observe();
    sink.append(record_);
    ++records_;
    outcome_.last_step = k;
    return true;
  }

  // Progress while a record (at `time`) is made: the flow integrating and its time, or the sharpness.
  void within_record(double time) {
    if (!progress_ || !*progress_) return;
    RecordWork work;
    work.record_time = time;
    if (integrating_ < flows_.size()) {
      work.flow = &outcome_.trajectories[integrating_ + 1].name;
      work.t = flows_[integrating_]->integrator.time();
    }
    (*progress_)(std::max(first_step_, outcome_.last_step), s_.steps, &work);
  }

  bool advance_flows(double time, const std::function<bool()>& stop_now) {
    for (std::size_t f = 0; f < flows_.size(); ++f) {
      FlowTrack& track = *flows_[f];
      TrajectorySummary& summary = outcome_.trajectories[f + 1];
      if (track.failed) continue;
      integrating_ = f;
      const auto t0 = Clock::now();
      const Dop853::Status status = advance_flow(track, time, stop_now);
      integrating_ = none;
      summary.wall_seconds += seconds_since(t0);
      if (status == Dop853::Status::interrupted) return false;
      if (status != Dop853::Status::ok) {
        track.failed = true;
        summary.status = to_string(status);
        track.theta.setConstant(nan);
      }
    }
    return true;
  }

  // The time at which piece p of a piecewise flow begins (the time of step p·segment_steps, as records compute it).
  double segment_time(const Flow& flow, long p) const {
    return static_cast<double>(p * flow.segment_steps()) * s_.lr;
  }
  long segment_at(const Flow& flow, double t) const {
    long p = static_cast<long>(t / segment_time(flow, 1));
    while (p > 0 && segment_time(flow, p) > t) --p;
    while (segment_time(flow, p + 1) <= t) ++p;
    return p;
  }

  // Integrates a flow to `time`; a piecewise one piece by piece, restarting the integrator with the next
  // piece's field as soon as it reaches a boundary before the run's end (so no interruption comes between).
  Dop853::Status advance_flow(FlowTrack& track, double time, const std::function<bool()>& stop_now) {
    const Flow& flow = *track.flow;
    if (flow.segment_steps() <= 0) return track.integrator.advance_to(time, track.theta, stop_now);
    const double end = static_cast<double>(s_.steps) * s_.lr;
    for (;;) {
      const long p = segment_at(flow, track.integrator.time());
      const double boundary = std::min(segment_time(flow, p + 1), end);
      track.integrator.set_end_time(boundary);
      const Dop853::Status status = track.integrator.advance_to(std::min(time, boundary), track.theta, stop_now);
      if (status != Dop853::Status::ok || time <= boundary) {
        if (status == Dop853::Status::ok && time == boundary && boundary < end) next_segment(track, p + 1);
        return status;
      }
      next_segment(track, p + 1);
    }
  }
  void next_segment(FlowTrack& track, long p) {
    track.flow->begin_segment(p);
    track.integrator.field_changed();
  }

  bool measure_sharpness(long k, bool finite, const std::function<bool()>& stop_now) {
    sharpness_value_ = preconditioned_value_ = nan;
    if (!layout_.sharpness) return true;
    if (finite && !measure_both(stop_now)) return false;
    const double lr_s = s_.lr * sharpness_value_, lr_p = s_.lr * preconditioned_value_;
    if (std::isfinite(lr_s)) outcome_.max_lr_sharpness = std::max(outcome_.max_lr_sharpness, lr_s);
    if (std::isfinite(lr_p))
      outcome_.max_lr_preconditioned_sharpness = std::max(outcome_.max_lr_preconditioned_sharpness, lr_p);
    const double judged = layout_.preconditioned_sharpness ? lr_p : lr_s;
    if (std::isfinite(judged) && judged > outcome_.stability.limit && outcome_.first_unstable_step < 0) {
      outcome_.first_unstable_step = k;
      if (control_) control_->edge_of_stability(k, judged, outcome_.stability);
    }
    return true;
  }

  // λ_max(H), then for a preconditioned method λ_max(P⁻¹H) as λ_max(S H S), S = P^(-1/2), by the same
  // estimator (one Lanczos basis) from its own warm start. False if a stop signal came first: then
  // neither warm start has changed.
  bool measure_both(const std::function<bool()>& stop_now) {
    if (!layout_.preconditioned_sharpness) {
      const SharpnessResult r = sharpness_(objective_, method_->theta(), slices_, stop_now);
      sharpness_value_ = r.value;
      return !r.interrupted;
    }
    const Vector before = sharpness_.warm_start();
    const SharpnessResult r = sharpness_(objective_, method_->theta(), slices_, stop_now);
    if (r.interrupted) return false;
    const Vector after = sharpness_.warm_start();
    method_->preconditioner(scale_);
    scale_ = 1.0 / scale_.array().sqrt();
    sharpness_.set_warm_start(preconditioned_start_);
    const SharpnessResult p = sharpness_(objective_, method_->theta(), slices_, stop_now, &scale_);
    if (p.interrupted) {
      sharpness_.set_warm_start(before);
      return false;
    }
    preconditioned_start_ = sharpness_.warm_start();
    sharpness_.set_warm_start(after);
    sharpness_value_ = r.value;
    preconditioned_value_ = p.value;
    return true;
  }

  // Every trajectory's observables at this record, reduced in one collective.
  void observe() {
    const Method& m = *method_;
    if (s_.rates) {
      m.next_iterate(next_);
      for (std::size_t f = 0; f < rate_fields_.size(); ++f) {
        Flow& field = *rate_fields_[f];
        if (field.segment_steps() > 0) field.begin_segment(record_.step / field.segment_steps());
        field(m.theta(), fields_[f]);
      }
    }
    const ObservationPoint discrete{m.theta(), m.gradient(), m.loss(), nullptr, s_.rates ? &next_ : nullptr,
                                    s_.rates ? &fields_ : nullptr, sharpness_value_, preconditioned_value_};
    observation_.clear();
    observation_.add_local_sums(0, &discrete);
    std::vector<double> flow_losses(flows_.size(), nan);
    for (std::size_t f = 0; f < flows_.size(); ++f) {
      FlowTrack& track = *flows_[f];
      if (track.failed) {
        observation_.add_local_sums(f + 1, nullptr);
        continue;
      }
      flow_losses[f] = objective_.value_and_gradient(track.theta, flow_grad_);
      const ObservationPoint point{track.theta, flow_grad_, flow_losses[f], &m.theta()};
      observation_.add_local_sums(f + 1, &point);
    }
    observation_.reduce(slices_);
    observation_.rewind();
    record_.trajectories[0].theta = &m.theta();
    observation_.take_values(0, &discrete, record_.trajectories[0].values);
    for (std::size_t f = 0; f < flows_.size(); ++f) {
      // values() reads the point's scalars only.
      const ObservationPoint point{flows_[f]->theta, flow_grad_, flow_losses[f], &m.theta()};
      record_.trajectories[f + 1].theta = &flows_[f]->theta;
      observation_.take_values(f + 1, flows_[f]->failed ? nullptr : &point, record_.trajectories[f + 1].values);
    }
  }

  DriverCheckpoint checkpoint(long k) const {
    DriverCheckpoint c;
    c.step = k;
    c.records = records_;
    c.method = method_->save();
    c.max_lr_sharpness = outcome_.max_lr_sharpness;
    c.max_lr_preconditioned_sharpness = outcome_.max_lr_preconditioned_sharpness;
    c.first_unstable_step = outcome_.first_unstable_step;
    c.sharpness_start = sharpness_.warm_start();
    c.preconditioned_sharpness_start = preconditioned_start_;
    for (std::size_t f = 0; f < flows_.size(); ++f)
      c.flows.push_back({flows_[f]->theta, flows_[f]->failed, outcome_.trajectories[f + 1].status,
                         flows_[f]->flow->evaluations(), flows_[f]->integrator.export_state()});
    for (const TrajectorySummary& t : outcome_.trajectories) c.wall_seconds.push_back(t.wall_seconds);
    return c;
  }

  RunOutcome summary() {
    outcome_.trajectories[0].evaluations = method_->evaluations();
    outcome_.trajectories[0].accepted_steps = outcome_.last_step;
    for (std::size_t t = 0; t < outcome_.trajectories.size(); ++t) {
      TrajectorySummary& s = outcome_.trajectories[t];
      if (const double* loss = record_.find(t, "loss")) s.final_loss = *loss;
      if (const double* d = record_.find(t, "distance_to_discrete")) s.final_distance = *d;
      if (t == 0) continue;
      s.evaluations = flows_[t - 1]->flow->evaluations();
      s.accepted_steps = flows_[t - 1]->integrator.accepted_steps();
      s.rejected_steps = flows_[t - 1]->integrator.rejected_steps();
    }
    return outcome_;
  }

  Objective& objective_;
  const DriverSettings& s_;
  const ObservableLayout& layout_;
  const SliceExchange& slices_;
  RunControl* control_;
  std::unique_ptr<Method> method_;
  Observation observation_;
  std::vector<std::unique_ptr<FlowTrack>> flows_;
  std::vector<std::unique_ptr<Flow>> rate_fields_;  // apart from the integrated flows: their counts stay theirs
  std::vector<Vector> fields_;
  Vector next_, flow_grad_;
  SharpnessEstimator sharpness_;
  double sharpness_value_ = nan, preconditioned_value_ = nan;
  Vector preconditioned_start_, scale_;
  double loss_limit_ = std::numeric_limits<double>::infinity();
  long first_step_ = 0, records_ = 0;
  Record record_;
  RunOutcome outcome_;
  static constexpr std::size_t none = std::numeric_limits<std::size_t>::max();
  const ProgressFn* progress_ = nullptr;
  std::size_t integrating_ = none;  // the flow integrating within a record, none when none is
};

}  // namespace

const double* Record::find(std::size_t t, const std::string& name) const {
  if (!layout || t >= layout->size() || t >= trajectories.size()) return nullptr;
  std::size_t at = 0;
  for (const SeriesShape& s : (*layout)[t].series) {
    const auto width = static_cast<std::size_t>(s.width == 0 ? 1 : s.width);
    if (s.name == name) return at + width <= trajectories[t].values.size() ? trajectories[t].values.data() + at : nullptr;
    at += width;
  }
  return nullptr;
}

const char* to_string(RunStatus s) {
  switch (s) {
    case RunStatus::complete: return "complete";
    case RunStatus::diverged: return "diverged";
    case RunStatus::interrupted: return "interrupted";
  }
  return "?";
}

std::string StabilityLimit::crossing(long step) const {
  std::ostringstream text;
  text << measure() << " > " << std::setprecision(6) << limit << " from step " << step
       << ": the EoM cannot describe " << method << " there";
  return text.str();
}

RecordLayout record_layout(const DriverSettings& settings, const ObservableLayout& observables,
                           const SliceExchange& slices) {
  return Observation(observable_setup(settings, observables, slices), settings).layout();
}

RunOutcome run_synchronized(Objective& objective, const Vector& theta0, const DriverSettings& settings,
                            const ObservableLayout& observables, const SliceExchange& slices,
                            RecordSink& sink, const ProgressFn& progress, RunControl* control,
                            const DriverCheckpoint* resume_from) {
  SynchronizedRun run(objective, settings, observables, slices, control);
  if (resume_from)
    run.resume(*resume_from, theta0);
  else
    run.start(theta0);
  return run.run(sink, progress);
}

}  // namespace eomlab
