// SIGTERM and SIGUSR1 (a batch system's time-limit warning or preemption) ask the study to stop:
// the handler only records the request; runs poll it at every GD step, checkpoint and exit 75.
#pragma once

namespace eomlab {

void install_stop_handlers();
bool stop_signal_received();

}  // namespace eomlab
