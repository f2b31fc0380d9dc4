#include "core/config.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace eomlab {

std::string format_number(double x) {
  char buf[32];
  for (int digits = 6;; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, x);
    if (digits == 17 || std::strtod(buf, nullptr) == x) return buf;
  }
}

std::vector<RunSpec> expand_grid(const StudyConfig& config) {
  std::vector<RunSpec> runs;
  for (double lr : config.optimizer.lr)
    for (std::uint64_t seed : config.seeds)
      for (double wd : config.model.weight_decay) {
        RunSpec r;
        r.index = static_cast<int>(runs.size());
        r.lr = lr;
        r.seed = seed;
        r.weight_decay = wd;
        r.steps = config.optimizer.steps > 0 ? config.optimizer.steps
                                             : std::lround(config.optimizer.horizon / lr);
        // The method is named when it is not the default (DESIGN.md §3.7), so ids of GD studies stay as they were.
        r.run_id = (config.optimizer.method == OptimizerConfig{}.method ? "" : config.optimizer.method + "_") + "lr" +
                   format_number(lr) + "_seed" + std::to_string(seed) + "_wd" + format_number(wd);
        runs.push_back(r);
      }
  return runs;
}

const char* to_string(Activation a) {
  switch (a) {
    case Activation::tanh: return "tanh";
    case Activation::softplus: return "softplus";
    case Activation::gelu: return "gelu";
    case Activation::relu: return "relu";
    case Activation::silu: return "silu";
  }
  return "?";
}

const char* to_string(LossKind l) { return l == LossKind::cross_entropy ? "cross_entropy" : "mse"; }

const char* to_string(Normalization n) {
  switch (n) {
    case Normalization::none: return "none";
    case Normalization::layer: return "layer";
    case Normalization::weight: return "weight";
  }
  return "?";
}

}  // namespace eomlab
