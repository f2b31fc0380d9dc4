// One study from a validated config: the sweep grid dealt to groups of ranks_per_run ranks, each run
// computed by its group (data sharded, derivatives summed over the group) and written to
// <output>/runs/<run_id>.h5; progress on the console; a summary table at the end on world rank 0.
#pragma once
#include <functional>
#include <iosfwd>
#include <string>

#include "core/config.hpp"
#include "dist/comm.hpp"

namespace eomlab {

struct StudyOptions {
  bool overwrite = false;  // replace this invocation's existing results
  bool resume = false;     // continue unfinished runs from their checkpoints, skip finished ones
  int shard = 0, shards = 1;  // run only runs i, i+n, i+2n, ... (job arrays)
  // The resolved text of a stored <output>/study.ini, for comparing it with this config's (cli's parser,
  // so a study.ini in another spelling, or written by an older eomlab, compares by value).
  std::function<std::string(const std::string&)> canonical_config = [](const std::string& text) { return text; };
  // What continues a study stopped by a signal, in the caller's terms (the Python module's: resume=True);
  // empty: the command line's, --resume.
  std::string how_to_resume;
};

// Whether run `index` of the sweep grid belongs to shard i/n (runs i, i+n, i+2n, ...).
inline bool in_shard(int index, int shard, int shards) { return index % shards == shard; }

// Exit code after a stop signal: every running run was checkpointed; rerun with --resume.
inline constexpr int exit_interrupted = 75;

// Which group (of world.size() / ranks_per_run) runs each run. Throws InputError if the world size is
// not a multiple of ranks_per_run.
int group_count(const StudyConfig& config, int world_size);

// `ranks_on_node`: of this invocation's ranks, those on this node (the memory check's count).
void print_dry_run(const StudyConfig& config, const StudyOptions& options, int world_size, int ranks_on_node,
                   std::ostream& out);

// Runs the study; returns the process exit code: 0 when every run finished (diverged runs included),
// exit_interrupted after a stop signal.
int run_study(const StudyConfig& config, const StudyOptions& options, const dist::Comm& world);

// Rebuilds <output>/sweep.h5 from the run files present (world rank 0 writes it). A config that differs
// from the study's (its study.ini, or a run file's) is an InputError on every rank, nothing written.
void rebuild_catalog(const StudyConfig& config, const StudyOptions& options, const dist::Comm& world);

}  // namespace eomlab
