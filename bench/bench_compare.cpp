// eomlab's side of bench/compare_torch.py: loads the data, parameters and direction written by that
// script (DESIGN.md §3.3 formats), times gradient, HVP, T[v, v] and one field evaluation of gf and
// eom1..eom3 on the ranks of MPI_COMM_WORLD (θ sliced, data sharded), prints one line per measurement
// ("name milliseconds"), and writes ∇L, Hv and T[v, v] as raw float64 to OUT_PREFIX.{grad,hvp,t}.bin so
// the two frameworks' numbers can be compared.
//   mpirun -np R bench_compare DATA.h5 THETA.h5 V.h5 OUT_PREFIX [repeats]
// The network: $EOMLAB_ARCHITECTURE (DESIGN.md §3.6, input shape from the data) under $EOMLAB_LOSS
// (cross_entropy, the default, or mse); without an architecture, the tanh MLP of $EOMLAB_WIDTHS or of
// the data's widths with hidden layers 256, 256 under cross-entropy.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "diff/objective.hpp"
#include "data/synthetic.hpp"
#include "dist/comm.hpp"
#include "flow/flow.hpp"
#include "io/input.hpp"
#include "bench_support.hpp"

using namespace eomlab;

namespace {

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

LossKind loss_from_environment() {
  const std::string loss = environment("EOMLAB_LOSS");
  if (loss.empty() || loss == "cross_entropy") return LossKind::cross_entropy;
  if (loss == "mse") return LossKind::mse;
  throw InputError("EOMLAB_LOSS: expected cross_entropy or mse, got '" + loss + "'");
}

Model model_for(const Dataset& data, LossKind loss) {
  const std::string architecture = environment("EOMLAB_ARCHITECTURE");
  if (architecture.empty()) return bench::tanh_mlp(bench::widths_for(data, {256, 256}));
  ModelConfig config;
  config.architecture = architecture;
  config.loss = loss;
  return make_model(config, data.shape());
}

int compare(const dist::Comm& world, int argc, char** argv) {
  const int repeats = argc > 5 ? std::stoi(argv[5]) : 10;
  const LossKind loss = environment("EOMLAB_ARCHITECTURE").empty() ? LossKind::cross_entropy : loss_from_environment();
  const Dataset full = io::read_data_file(argv[1], loss, 0, "data");
  Model model = model_for(full, loss);
  const Index p = model.n_params();
  const Vector theta = io::read_parameters_file(argv[2], p, "theta");
  const Vector v = io::read_parameters_file(argv[3], p, "v");
  const dist::SlicedVectors slices(world, p);
  ModelObjective objective(std::move(model), shard(full, world.rank(), world.size()), full.n_samples(), 0.0, slices);
  const Vector ts = theta.segment(slices.begin(), slices.local_size()), vs = v.segment(slices.begin(), slices.local_size());

  auto time = [&](const char* name, auto&& evaluate) {
    const double seconds = bench::median_seconds(world, repeats, evaluate);
    if (world.rank() == 0) std::printf("%s %.4f\n", name, 1e3 * seconds);
  };
  Vector out, whole;
  auto save = [&](const std::string& suffix, const Vector& slice) {
    slices.all_gather(slice, whole);
    if (world.rank() == 0)
      std::ofstream(std::string(argv[4]) + suffix, std::ios::binary)
          .write(reinterpret_cast<const char*>(whole.data()), static_cast<std::streamsize>(sizeof(double) * whole.size()));
  };
  // Each measurement starts from a fresh point so nothing cached from the previous one helps it.
  Vector perturbed = ts;
  auto fresh_point = [&] { bench::move_to_fresh_point(perturbed); };
  time("gradient", [&] { fresh_point(); objective.value_and_gradient(perturbed, out); });
  objective.value_and_gradient(ts, out);
  save(".grad.bin", out);
  time("hvp", [&] { fresh_point(); objective.hessian_vector(perturbed, vs, out); });
  objective.hessian_vector(ts, vs, out);
  save(".hvp.bin", out);
  time("third_order", [&] { fresh_point(); objective.third_order(perturbed, vs, vs, out); });
  objective.third_order(ts, vs, vs, out);
  save(".t.bin", out);
  for (int order = 0; order <= counter_term_table().max_order(); ++order) {
    const auto field_owner = make_flow("eom" + std::to_string(order), objective, "gd", 0.01);
    Flow& field = *field_owner;
    time(("field_" + ("eom" + std::to_string(order))).c_str(), [&] { fresh_point(); field(perturbed, out); });
  }
  return 0;
}

}  // namespace

// Bad input (an unknown EOMLAB_ARCHITECTURE, a missing file) is the same on every rank: each stops, rank 0
// prints one line and the exit code is 2, as eomlab's. Any other error exits 1 (the job is aborted when
// only some ranks may have hit it).
int main(int argc, char** argv) {
  dist::Environment env(argc, argv);
  const dist::Comm world = dist::Comm::world();
  if (argc < 5) {
    if (world.rank() == 0) std::fprintf(stderr, "usage: bench_compare DATA.h5 THETA.h5 V.h5 OUT_PREFIX [repeats]\n");
    return 2;
  }
  try {
    return compare(world, argc, argv);
  } catch (const InputError& e) {
    if (world.rank() == 0) std::fprintf(stderr, "bench_compare: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_compare: error on rank %d: %s\n", world.rank(), e.what());
    if (world.size() > 1) dist::Environment::abort(1);
    return 1;
  }
}
