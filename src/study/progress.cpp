#include "study/progress.hpp"

#include <chrono>
#include <iomanip>
#include <iostream>
#include <sstream>

namespace eomlab {

ProgressPrinter::ProgressPrinter(bool active, std::string label, double every, Clock clock, std::ostream* out)
    : active_(active), label_(std::move(label)), every_(every), clock_(std::move(clock)), out_(out ? out : &std::cout) {
  if (!clock_)
    clock_ = [] { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); };
  start_ = clock_();
}

void ProgressPrinter::operator()(long step, long steps, const RecordWork* within) {
  if (!active_) return;
  const double elapsed = clock_() - start_;
  // Lines within a record and step lines keep their own intervals: with flows, most intervals end inside a
  // record, and its lines starved the step lines and their ETA (an adversarial review: none in a 55 s study).
  if (within) {  // a long record: step is the last one recorded
    if (every_ <= 0 || elapsed - last_within_ < every_) return;
    last_within_ = elapsed;
    std::ostringstream what;
    what << ", ";
    if (within->flow)
      what << *within->flow << " at t = " << within->t << " of " << within->record_time;
    else
      what << "sharpness";
    print(step, steps, elapsed, what.str());
    return;
  }
  const bool done = step == steps, first = first_step_ < 0;
  if (first) first_step_ = step;
  if (!done && !first && (every_ <= 0 || elapsed - last_step_ < every_)) return;
  last_step_ = elapsed;
  std::ostringstream eta;
  // From this process's own pace: a resumed run's steps before the checkpoint took no time here.
  if (!done && step > first_step_)
    eta << ", ETA " << std::fixed << std::setprecision(1)
        << elapsed * static_cast<double>(steps - step) / static_cast<double>(step - first_step_) << " s";
  print(step, steps, elapsed, eta.str());
}

void ProgressPrinter::print(long step, long steps, double elapsed, const std::string& end) {
  const double frac = steps > 0 ? static_cast<double>(step) / static_cast<double>(steps) : 1.0;
  std::ostringstream line;
  line << label_ << " step " << step << "/" << steps << " (" << std::fixed << std::setprecision(0) << 100 * frac
       << "%) elapsed " << std::setprecision(1) << elapsed << " s" << end;
  *out_ << line.str() << std::endl;
}

}  // namespace eomlab
