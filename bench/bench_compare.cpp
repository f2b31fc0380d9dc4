// eomlab's side of bench/compare_torch.py: loads the data, parameters and direction written by that
// script (DESIGN.md §3.3 formats), times gradient, HVP, T[v, v] and one field evaluation of gf and
// eom1..eom3 on the ranks of MPI_COMM_WORLD (θ sliced, data sharded), prints one line per measurement
// ("name milliseconds", each followed by a line of the time per evaluation in the allreduces, e.g.
// batchnorm's statistics, and in the gathers and scatters of the sliced vectors), and writes ∇L, Hv
// and T[v, v] as raw float64 to OUT_PREFIX.{grad,hvp,t}.bin so the two frameworks' numbers can be
// compared.
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
#include <utility>
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

// The run's slices, forwarding every call to `inner` and timing it on this rank: the allreduces
// (sum_in_place: batchnorm's statistics and their derivatives, and the objective's scalar sums: whether
// θ changed, the loss) apart from the all-gathers and reduce-scatters of θ, the directions and the
// result. Each allreduce is preceded by a barrier, timed apart: the wait for the slowest rank that the
// allreduce would otherwise include (its synchronization), then the sum itself. Benchmark-only: the
// library's own exchanges are untimed and have no barrier.
class TimedSlices final : public SliceExchange {
 public:
  struct Totals {
    double wait_seconds = 0, allreduce_seconds = 0, exchange_seconds = 0;
    long allreduces = 0, scalar_allreduces = 0;
    double allreduce_doubles = 0;
  };
  TimedSlices(const SliceExchange& inner, const dist::Comm& comm) : inner_(inner), comm_(comm) {}
  Index global_size() const override { return inner_.global_size(); }
  Index begin() const override { return inner_.begin(); }
  Index end() const override { return inner_.end(); }
  std::uint64_t bytes_sent() const override { return inner_.bytes_sent(); }
  void sum_in_place(double* data, std::size_t n) const override {
    const auto t0 = Clock::now();
    comm_.barrier();
    const auto t1 = Clock::now();
    inner_.sum_in_place(data, n);
    totals_.wait_seconds += std::chrono::duration<double>(t1 - t0).count();
    totals_.allreduce_seconds += seconds_since(t1);
    ++totals_.allreduces;
    totals_.scalar_allreduces += n == 1;
    totals_.allreduce_doubles += static_cast<double>(n);
  }
  void all_gather(const Vector& slice, Vector& whole) const override {
    const auto t0 = Clock::now();
    inner_.all_gather(slice, whole);
    totals_.exchange_seconds += seconds_since(t0);
  }
  void reduce_scatter(Vector& whole, Vector& slice) const override {
    const auto t0 = Clock::now();
    inner_.reduce_scatter(whole, slice);
    totals_.exchange_seconds += seconds_since(t0);
  }
  // What was spent since the last call, and starts counting afresh.
  Totals take() const { return std::exchange(totals_, Totals{}); }

 private:
  using Clock = std::chrono::steady_clock;
  static double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }
  const SliceExchange& inner_;
  const dist::Comm& comm_;
  mutable Totals totals_;
};

int compare(const dist::Comm& world, int argc, char** argv) {
  const int repeats = argc > 5 ? std::stoi(argv[5]) : 10;
  const LossKind loss = environment("EOMLAB_ARCHITECTURE").empty() ? LossKind::cross_entropy : loss_from_environment();
  Dataset full = io::read_data_file(argv[1], loss, -1, "data");
  Model model = model_for(full, loss);
  if (loss == LossKind::mse && full.has_labels()) labels_to_targets(full, model.n_outputs());  // as the study does
  const Index p = model.n_params();
  const Vector theta = io::read_parameters_file(argv[2], p, "theta");
  const Vector v = io::read_parameters_file(argv[3], p, "v");
  const dist::SlicedVectors slices(world, p);
  const TimedSlices timed(slices, world);
  ModelObjective objective(std::move(model), shard(full, world.rank(), world.size()), full.n_samples(), 0.0, timed);
  const Vector ts = theta.segment(slices.begin(), slices.local_size()), vs = v.segment(slices.begin(), slices.local_size());

  // "name milliseconds" (the median), then, in a line of its own, the mean time per evaluation rank 0
  // spent waiting for the other ranks before the objective's allreduces, in the allreduces, and in its
  // gathers and scatters.
  auto time = [&](const char* name, auto&& evaluate) {
    timed.take();
    const double seconds = bench::median_seconds(world, repeats, evaluate);
    const TimedSlices::Totals spent = timed.take();
    const double calls = static_cast<double>(repeats + 2);  // median_seconds' evaluations, warm-ups included
    if (world.rank() == 0) {
      std::printf("%s %.4f\n", name, 1e3 * seconds);
      std::printf("reductions of %s per evaluation: wait before the allreduces %.4f ms, allreduce %.4f ms in %.1f calls "
                  "(%.1f of one value) of %.0f doubles, gather and scatter %.4f ms\n",
                  name, 1e3 * spent.wait_seconds / calls, 1e3 * spent.allreduce_seconds / calls,
                  static_cast<double>(spent.allreduces) / calls, static_cast<double>(spent.scalar_allreduces) / calls,
                  spent.allreduce_doubles / calls, 1e3 * spent.exchange_seconds / calls);
    }
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
