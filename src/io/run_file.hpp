// The run file of DESIGN.md §3.4, written collectively by the ranks of one run with parallel HDF5
// (MPI-IO driver, also on one rank). Datasets along the record axis R are chunked and extendible and
// the file is flushed after every record, so a killed run leaves a readable prefix with
// status = running. Every rank of the group must make the same calls with the same arguments.
// Beside DESIGN.md §3.4's datasets it writes, when the model has them, /model/scale_invariant_blocks
// and /model/translation_components (tables like /model/layout). The record series are those of the
// run's RecordLayout (one per observable and trajectory, flow/observable.hpp); the root attributes
// `method`, `flows` and `trajectories` and each /observables/<trajectory> group's `series` name them.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dist/comm.hpp"
#include "flow/driver.hpp"

namespace eomlab::io {

struct RunFileHeader {
  std::string run_id;
  double lr = 0;
  std::uint64_t seed = 0;
  double weight_decay = 0;
  int ranks_per_run = 1;
  std::string config_text;
  std::string architecture, input_shape;  // the model's resolved layers and its sample shape ("1x28x28")
  bool couples_samples = false;           // whether a batch's loss depends on the batch's other samples (batchnorm)
  // The method's hyperparameters as root attributes (DESIGN.md §3.7: momentum, beta1, ..., order), and
  // with the sharpness its stable_lr_sharpness.
  std::vector<std::pair<std::string, double>> method_numbers;
  std::vector<std::pair<std::string, long long>> method_integers;
  std::vector<std::pair<std::string, std::string>> method_texts;
  // Further string attributes of the root group (provenance: version, git_sha, host, created, ...).
  std::vector<std::pair<std::string, std::string>> provenance;
  // Fingerprints of the run's inputs (data_fingerprint, init_fingerprint), root attributes too; a resume
  // writes those a file begun by an older eomlab lacks.
  std::vector<std::pair<std::string, std::string>> inputs;
  ObservableLayout observables;
  Index n_params = 0;
  Index n_samples = 0;  // the samples the loss averages over (all the run's shards)
  Index slice_begin = 0, slice_size = 0;  // this rank's part of θ; each rank writes its own hyperslab
  RecordLayout records;                   // the method's trajectory first, then flows
  bool store_theta = true;
  bool rates = false;
};

class RunFile final : public RecordSink {
 public:
  // Creates (truncates) `path`. Collective over `group`.
  RunFile(const std::string& path, const dist::Comm& group, const RunFileHeader& header);
  // Reopens the run file of an interrupted run and cuts every record series back to `records` rows,
  // so appending continues exactly where the checkpoint left off. Collective over `group`.
  RunFile(const std::string& path, const dist::Comm& group, const RunFileHeader& header, long records,
          const std::string& resumed_at);
  ~RunFile() override;
  RunFile(const RunFile&) = delete;
  RunFile& operator=(const RunFile&) = delete;

  void append(const Record& record) override;
  // Writes status, finished time and per-trajectory statistics, then closes the file.
  void finish(const RunOutcome& outcome, const std::string& finished);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Why the run file at `path` cannot be continued from a checkpoint after `records` records, the last of
// step `last_step` (a record series missing, of another shape or shorter, /step not matching, the file
// unreadable), or "" when it can. Serial and read-only.
std::string reopen_problem(const std::string& path, const RunFileHeader& header, long records, long long last_step);

}  // namespace eomlab::io
