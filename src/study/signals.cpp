#include "study/signals.hpp"

#include <csignal>

namespace eomlab {
namespace {

volatile std::sig_atomic_t stop_requested = 0;  // the signal, 0 if none

extern "C" void on_stop_signal(int signal) { stop_requested = signal; }

constexpr std::array<int, stop_signal_count> stop_signals{SIGTERM, SIGUSR1, SIGINT, SIGHUP};

struct sigaction stop_action() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  return action;
}

bool ignored(const struct sigaction& a) { return !(a.sa_flags & SA_SIGINFO) && a.sa_handler == SIG_IGN; }

}  // namespace

void install_stop_handlers() {
  const struct sigaction action = stop_action();
  for (const int signal : stop_signals) {
    struct sigaction before {};
    sigaction(signal, nullptr, &before);
    if (signal != SIGHUP || !ignored(before)) sigaction(signal, &action, nullptr);  // nohup's SIGHUP stays ignored
  }
}

bool stop_signal_received() { return stop_requested != 0; }

StopSignalScope::StopSignalScope() {
  stop_requested = 0;
  const struct sigaction action = stop_action();
  for (std::size_t i = 0; i < stop_signals.size(); ++i) {
    sigaction(stop_signals[i], nullptr, &before_[i]);
    if (!ignored(before_[i])) sigaction(stop_signals[i], &action, nullptr);
  }
}

StopSignalScope::~StopSignalScope() {
  for (std::size_t i = 0; i < stop_signals.size(); ++i) sigaction(stop_signals[i], &before_[i], nullptr);
}

int StopSignalScope::received() const { return stop_requested; }

}  // namespace eomlab
