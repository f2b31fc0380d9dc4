// A run's progress lines on rank 0 of its group (README "progress"): its first and last step, a step line
// with the ETA every `every` seconds, and while one record takes long, lines naming what it does (the flow
// and its time, or the sharpness). The two kinds keep their own intervals, so neither starves the other.
#pragma once
#include <functional>
#include <ostream>
#include <string>

#include "flow/driver.hpp"

namespace eomlab {

class ProgressPrinter {
 public:
  using Clock = std::function<double()>;  // seconds since any fixed time
  // `every` <= 0: the first and last step only. The clock and the stream default to the steady clock and std::cout.
  ProgressPrinter(bool active, std::string label, double every, Clock clock = {}, std::ostream* out = nullptr);
  // The driver's ProgressFn: (step, steps, nullptr) after each record, (last step recorded, steps, work) within one.
  void operator()(long step, long steps, const RecordWork* within);

 private:
  bool active_;
  std::string label_;
  double every_;
  Clock clock_;
  std::ostream* out_;
  double start_;
  double last_step_ = -1e9, last_within_ = -1e9;  // when the last step line and line within a record were printed
  long first_step_ = -1;

  void print(long step, long steps, double elapsed, const std::string& end);
};

}  // namespace eomlab
