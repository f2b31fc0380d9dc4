// SIGTERM, SIGINT and SIGUSR1 (a kill, Ctrl-C, a batch system's time-limit warning or preemption) ask
// the study to stop: the handler only records the request; runs poll it at every GD step, checkpoint
// and exit 75. Under mpirun only SIGUSR1 reaches the ranks (Open MPI's mpirun takes SIGTERM and SIGINT
// itself and kills the ranks a second later): scripts/eomlab-mpirun and jobs/eomlab.sbatch turn
// TERM/INT into USR1 for them.
#pragma once

namespace eomlab {

void install_stop_handlers();
bool stop_signal_received();

}  // namespace eomlab
