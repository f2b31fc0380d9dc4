#include "cli/app.hpp"

#include <csignal>
#include <cstdlib>
#include <iostream>

#include "cli/options.hpp"
#include "core/error.hpp"
#include "dist/comm.hpp"
#include "eomlab/version.hpp"
#include "study/signals.hpp"
#include "study/study.hpp"

namespace {

eomlab::StudyOptions study_options(const eomlab::cli::Command& cmd) {
  return {cmd.overwrite, cmd.resume, cmd.shard, cmd.shards, eomlab::cli::canonical_config_text, ""};
}

}  // namespace

namespace eomlab {

int run_eomlab(int argc, char** argv) {
  install_stop_handlers();  // first, before MPI's start-up too: a stop signal must never kill a rank outright
  // A reader of the progress lines that went away (`| head`, a closed `less`) does not end the study: the
  // lines are lost (the stream's failed writes are ignored), the runs go on into their files.
  std::signal(SIGPIPE, SIG_IGN);
  dist::Environment mpi(argc, argv);
  const dist::Comm world = dist::Comm::world();
  const bool root = world.rank() == 0;
  try {
    const cli::Command cmd = cli::parse_command_line(argc, argv);
    switch (cmd.action) {
      case cli::Action::help:
        if (root) std::cout << cmd.help_text;
        return 0;
      case cli::Action::version:
        if (root) std::cout << "eomlab " << build::version << " (" << build::git_sha << ", " << build::compiler << ")\n";
        return 0;
      case cli::Action::print_config:
        if (root) std::cout << cmd.config.resolved_text;
        return 0;
      case cli::Action::dry_run: {
        const int on_node = world.node().size();  // collective
        if (root) print_dry_run(cmd.config, study_options(cmd), world.size(), on_node, std::cout);
        return 0;
      }
      case cli::Action::catalog:
        rebuild_catalog(cmd.config, study_options(cmd), world);
        return 0;
      case cli::Action::run:
        return run_study(cmd.config, study_options(cmd), world);
    }
  } catch (const InputError& e) {
    // Validation is identical on every rank: all of them stop here, rank 0 says why.
    // Each line in one write: std::cerr is unbuffered, and a line written piece by piece could be split by
    // another process's output (Open MPI's abort banner was seen inside one under a full disk).
    if (root) std::cerr << "eomlab: " + std::string(e.what()) + "\n" << std::flush;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "eomlab: error on rank " + std::to_string(world.rank()) + ": " + e.what() + "\n" << std::flush;
    if (world.size() > 1) dist::Environment::abort(1);
    // Alone, too, end without MPI_Finalize: after a failed write (a full disk) HDF5 may hold MPI-IO files it
    // can no longer close, and finalizing crashed (exit 139). Every handle of this process is unwound.
    std::cout.flush();
    std::_Exit(1);
  }
  return 1;
}

}  // namespace eomlab
