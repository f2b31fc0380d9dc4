// Per-evaluation time of the gradient and the HVP of the MLP objective with θ sliced and the data
// sharded over the ranks of MPI_COMM_WORLD, and the bytes each rank sends per HVP against the
// 2P(r-1)/r floor (all-gather of v + reduce-scatter of Hv). Run it side by side:
//   mpirun -np 1 build/bench/bench_distributed && mpirun -np 2 build/bench/bench_distributed
// Options: --widths 784,256,256,10 --samples 1024 --repeats 20
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/rng.hpp"
#include "data/synthetic.hpp"
#include "diff/objective.hpp"
#include "dist/comm.hpp"
#include "bench_support.hpp"

using namespace eomlab;

int main(int argc, char** argv) {
  dist::Environment env(argc, argv);
  const dist::Comm world = dist::Comm::world();
  std::vector<Index> widths{784, 256, 256, 10};
  Index samples = 1024;
  int repeats = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--samples")) samples = std::stol(argv[i + 1]);
    if (!std::strcmp(argv[i], "--repeats")) repeats = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--widths")) widths = bench::parse_widths(argv[i + 1]);
  }
  DataConfig data;
  data.n_samples = samples;
  data.n_features = widths.front();
  data.n_classes = widths.back();
  ModelConfig model;
  model.layers = widths;
  const Dataset full = make_synthetic(data, model);
  Model mlp = bench::tanh_mlp(widths);
  const Index p = mlp.n_params();
  const Vector theta = mlp.initial_parameters(1);
  Rng rng(2, rng_stream::test);
  Vector v(p);
  for (Index i = 0; i < p; ++i) v[i] = rng.normal();
  const dist::SlicedVectors slices(world, p);
  ModelObjective objective(std::move(mlp), shard(full, world.rank(), world.size()), samples, 0.0, slices);
  const Vector theta_s = theta.segment(slices.begin(), slices.local_size());
  const Vector v_s = v.segment(slices.begin(), slices.local_size());
  Vector out;

  auto time = [&](auto&& evaluate) { return bench::median_seconds(world, repeats, evaluate); };
  // Each gradient and the first HVP at a fresh point (θ all-gathered, nothing reused); then HVPs at
  // the point of the previous evaluation, which reuse its forward pass (Lanczos, the eom1 field).
  Vector moved = theta_s;
  auto fresh_point = [&] { bench::move_to_fresh_point(moved); };
  const double t_grad = time([&] { fresh_point(); objective.value_and_gradient(moved, out); });
  const std::uint64_t before = slices.bytes_sent();
  objective.hessian_vector(moved, v_s, out);
  const double hvp_bytes = static_cast<double>(slices.bytes_sent() - before);
  const double t_hvp = time([&] { fresh_point(); objective.hessian_vector(moved, v_s, out); });
  const double t_hvp_same = time([&] { objective.hessian_vector(moved, v_s, out); });
  const int r = world.size();
  const double floor = 2.0 * 8.0 * static_cast<double>(p) * (r - 1) / r;
  if (world.rank() == 0)
    std::printf("ranks %d  P %ld  samples %ld  gradient %.2f ms  HVP %.2f ms (%.2f gradients)  HVP at the same point "
                "%.2f ms  bytes/rank/HVP %.0f  floor 2P(r-1)/r %.0f\n",
                r, static_cast<long>(p), static_cast<long>(samples), 1e3 * t_grad, 1e3 * t_hvp, t_hvp / t_grad,
                1e3 * t_hvp_same, hvp_bytes, floor);
  return 0;
}
