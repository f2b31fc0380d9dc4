// One study from a validated config: the sweep grid dealt to groups of ranks_per_run ranks, each run
// computed by its group (data sharded, derivatives summed over the group) and written to
// <output>/runs/<run_id>.h5; progress on the console; a summary table at the end on world rank 0.
#pragma once
#include <iosfwd>

#include "core/config.hpp"
#include "dist/comm.hpp"

namespace eomlab {

struct StudyOptions {
  bool overwrite = false;
};

// Which group (of world.size() / ranks_per_run) runs each run. Throws InputError if the world size is
// not a multiple of ranks_per_run.
int group_count(const StudyConfig& config, int world_size);

void print_dry_run(const StudyConfig& config, int world_size, std::ostream& out);

// Runs the study; returns the process exit code (0 when every run finished, diverged runs included).
int run_study(const StudyConfig& config, const StudyOptions& options, const dist::Comm& world);

}  // namespace eomlab
