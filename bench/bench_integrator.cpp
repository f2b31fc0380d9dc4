// eomlab's side of bench/integrator_efficiency.py: integrates one flow of the MLP objective from the
// parameters in THETA.h5 over [0, T] at each given rtol (atol = rtol * 1e-2) and prints
// "rtol evaluations" per line, writing the final state to OUT_PREFIX.<i>.bin (raw float64).
//   bench_integrator DATA.h5 THETA.h5 ORDER LR T OUT_PREFIX RTOL...
// Widths from EOMLAB_WIDTHS (default input,64,64,classes).
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "diff/objective.hpp"
#include "dist/comm.hpp"
#include "flow/dop853.hpp"
#include "flow/flow.hpp"
#include "bench_support.hpp"
#include "io/input.hpp"

using namespace eomlab;

int main(int argc, char** argv) {
  dist::Environment env(argc, argv);
  if (argc < 8) {
    std::fprintf(stderr, "usage: bench_integrator DATA.h5 THETA.h5 ORDER LR T OUT_PREFIX RTOL...\n");
    return 2;
  }
  const Dataset data = io::read_data_file(argv[1], LossKind::cross_entropy, 0, "data");
  const std::vector<Index> widths = bench::widths_for(data, {64, 64});
  Model mlp = bench::tanh_mlp(widths);
  const Index p = mlp.n_params();
  const Vector theta0 = io::read_parameters_file(argv[2], p, "theta");
  const int order = std::stoi(argv[3]);
  const double lr = std::stod(argv[4]), horizon = std::stod(argv[5]);
  const WholeVector whole(p);
  ModelObjective objective(std::move(mlp), data, data.n_samples(), 0.0, whole);
  for (int i = 7; i < argc; ++i) {
    const double rtol = std::stod(argv[i]);
    const auto field_owner = make_flow("eom" + std::to_string(order), objective, "gd", lr);
  Flow& field = *field_owner;
    Dop853 rk([&](const Vector& y, Vector& dy) { field(y, dy); }, IntegratorSettings{rtol, rtol * 1e-2}, whole, p);
    rk.start(0.0, theta0);
    rk.set_end_time(horizon);
    Vector y = theta0;
    rk.advance_to(horizon, y);
    std::printf("%.3e %ld\n", rtol, field.evaluations());
    std::ofstream(std::string(argv[6]) + "." + std::to_string(i - 7) + ".bin", std::ios::binary)
        .write(reinterpret_cast<const char*>(y.data()), static_cast<std::streamsize>(sizeof(double) * y.size()));
  }
  return 0;
}
