// eomlab with the toys of this folder registered: one line each, then the real program.
#include <cstdio>

#include "cli/app.hpp"
#include "core/error.hpp"
#include "flow/flow.hpp"
#include "flow/method.hpp"
#include "flow/observable.hpp"

namespace toys {
std::unique_ptr<eomlab::Method> make_half_step_gd(const eomlab::MethodContext&);
std::unique_ptr<eomlab::Method> make_ema_momentum_gd(const eomlab::MethodContext&);
std::unique_ptr<eomlab::Flow> make_half_speed_gf(const eomlab::FlowContext&);
std::unique_ptr<eomlab::Flow> make_quarter_speed_gf(const eomlab::FlowContext&);
std::unique_ptr<eomlab::Flow> make_double_speed_gf(const eomlab::FlowContext&);
eomlab::Observables make_theta_sum(const eomlab::ObservableSetup&, eomlab::TrajectoryRole);
}  // namespace toys

// A registration eomlab refuses (a name taken twice, a name that is not a word, an unknown key) is a
// programming error: said in one line, exit 1, before anything runs.
int main(int argc, char** argv) {
  try {
    eomlab::method_registry().add("half_step_gd", toys::make_half_step_gd);
    eomlab::method_registry().add("ema_momentum_gd", {toys::make_ema_momentum_gd, {{"momentum", "0.5"}}});
    eomlab::flow_registry().add("half_speed_gf", toys::make_half_speed_gf);
    eomlab::flow_registry().add("quarter_speed_gf", toys::make_quarter_speed_gf);
    eomlab::flow_registry().add("double_speed_gf", toys::make_double_speed_gf);
    eomlab::observable_registry().add("theta_sum", {toys::make_theta_sum, false});
  } catch (const eomlab::Error& e) {
    std::fprintf(stderr, "eomlab_toys: %s\n", e.what());
    return 1;
  }
  return eomlab::run_eomlab(argc, argv);
}
