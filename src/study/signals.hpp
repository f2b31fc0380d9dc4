// SIGTERM, SIGINT, SIGUSR1 and SIGHUP (a kill, Ctrl-C, a batch system's time-limit warning or preemption,
// a closed terminal or ssh session unless nohup ignores it) ask the study to stop: the handler only
// records the request; runs poll it at every GD step, checkpoint and exit 75. Under mpirun only SIGUSR1
// reaches the ranks (Open MPI's mpirun takes SIGTERM and SIGINT itself and kills the ranks a second
// later): scripts/eomlab-mpirun and jobs/eomlab.sbatch turn TERM/INT into USR1 for them (the script HUP too).
#pragma once
#include <signal.h>

#include <array>
#include <cstddef>

namespace eomlab {

constexpr std::size_t stop_signal_count = 4;

// The command line's: for the whole process.
void install_stop_handlers();
bool stop_signal_received();

// A study run inside another program (the Python module): while the scope lives, the four signals ask
// the study to stop as above, except those the program ignores (SIG_IGN stays: nohup, a background job's
// SIGINT); a request from before it is forgotten. Its end restores the program's own handlers, so the
// program can then give the signal its usual effect (Python: KeyboardInterrupt).
class StopSignalScope {
 public:
  StopSignalScope();
  ~StopSignalScope();
  StopSignalScope(const StopSignalScope&) = delete;
  StopSignalScope& operator=(const StopSignalScope&) = delete;
  int received() const;  // the signal that asked to stop, 0 if none did

 private:
  std::array<struct sigaction, stop_signal_count> before_{};
};

}  // namespace eomlab
