// The sweep catalog <output>/sweep.h5 (DESIGN.md §3.4): /runs/<run_id> external links to every run file
// and /summary, one row per run (run_id, lr, seed, weight_decay, status, final_step, final_loss_gd and
// final_distance_<flow> for each flow). Built from the run files present; a run whose file is missing or
// unreadable gets status "missing". Written by one process to a temporary name and renamed into place,
// so readers never see a half-written catalog.
#pragma once
#include <string>
#include <vector>

#include "core/config.hpp"

namespace eomlab::io {

// What the catalog found: the runs with a readable file, and of them those still marked running.
struct CatalogCounts {
  int found = 0;
  int running = 0;
};

CatalogCounts write_catalog(const std::string& output_dir, const std::string& study_name, const std::string& config_text,
                  const std::vector<RunSpec>& runs, const std::vector<std::string>& trajectories);

}  // namespace eomlab::io
