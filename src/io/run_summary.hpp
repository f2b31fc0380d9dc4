// Reading back what a run file says about its outcome (for the end-of-study table and the catalog).
#pragma once
#include <map>
#include <string>
#include <vector>

namespace eomlab::io {

struct TrajectoryResult {
  std::string name;
  double final_loss = 0;
  double final_distance = 0;  // NaN-free only for flows
  long evaluations = 0;
};

struct RunResult {
  std::string run_id, status;
  double lr = 0, weight_decay = 0;
  long long seed = 0;
  long long final_step = 0;
  std::vector<TrajectoryResult> trajectories;  // the method's first
};

// Serial read of a run file (not collective).
RunResult read_run_result(const std::string& path, const std::vector<std::string>& trajectories);

// A string attribute of a run file's root (its `config`: the resolved config text it was computed with;
// its `git_sha`: the build that began it). Serial.
std::string read_run_string(const std::string& path, const std::string& attribute);
inline std::string read_run_config(const std::string& path) { return read_run_string(path, "config"); }
// Those of `attributes` the run file has on its root or on `group` ("model": /model's architecture and
// input_shape), by name, read in one opening. Serial.
std::map<std::string, std::string> read_run_strings(const std::string& path, const std::vector<std::string>& attributes,
                                                    const std::string& group = "");

}  // namespace eomlab::io
