// Time per gradient, HVP, T[u, v] and field evaluation (gf, eom1..3) of the MLP objective, beside the dense products
// (GEMMs) the gradient is made of, measured in the same run. Counters: GFLOPs, the dense products'
// operations actually done per second (the GEMMs' rate is what the hardware allows), and in_gradients,
// the time as a multiple of one gradient. Every evaluation is at a fresh point (nothing reused).
//   build/bench/bench_derivatives                       (reference 784-256-256-10, 1024 samples + small)
//   build/bench/bench_derivatives --benchmark_filter=small
#include "bench_timed.hpp"
#include "data/synthetic.hpp"
#include "flow/flow.hpp"
#include "flow/method.hpp"
#include "flow/sgd.hpp"
#include "model/blas.hpp"

using namespace eomlab;

namespace {

struct Network {
  std::vector<Index> widths;
  Index samples;
};

const Network reference{{784, 256, 256, 10}, 1024};
const Network small{{16, 64, 64, 4}, 256};

struct Fixture : bench::Evaluation {
  explicit Fixture(const Network& net, Rng r = Rng(2, rng_stream::test))
      : Evaluation(bench::tanh_mlp(net.widths), data(net), r) {}

  static Dataset data(const Network& net) {
    DataConfig data;
    data.n_samples = net.samples;
    data.n_features = net.widths.front();
    data.n_classes = net.widths.back();
    ModelConfig model;
    model.layers = net.widths;
    return make_synthetic(data, model);
  }
};

template <class F>
void measure(benchmark::State& state, const Network& net, F&& evaluate) {
  bench::measure<Fixture>(state, net, std::forward<F>(evaluate));
}
void gradient(benchmark::State& state, const Network* net) { bench::gradient<Fixture>(state, *net); }
void hvp(benchmark::State& state, const Network* net) { bench::hvp<Fixture>(state, *net); }
void third_order(benchmark::State& state, const Network* net) { bench::third_order<Fixture>(state, *net); }

// One field evaluation of `method`'s eom<order> (default hyperparameters: β = 0.9, β1 = 0.9, β2 = 0.999).
void method_field(benchmark::State& state, const Network* net, const char* method, int order) {
  Fixture f(*net);
  const auto field_owner = make_flow("eom" + std::to_string(order), *f.objective, method, 0.01);
  Flow& field = *field_owner;
  measure(state, *net, [&] {
    bench::move_to_fresh_point(f.theta);
    field(f.theta, f.out);
    benchmark::DoNotOptimize(f.out.data());
  });
}

void field(benchmark::State& state, const Network* net, int order) { method_field(state, net, "gd", order); }

// sgd's eom1 (DESIGN.md §1.5) with batches of `batch` samples: m batch gradients and m batch HVPs.
void sgd_eom1(benchmark::State& state, const Network* net, long batch) {
  Fixture f(*net);
  MethodSettings settings;
  settings.batch_size = batch;
  const auto method = make_method("sgd", {*f.objective, 0.01, settings, 1});
  const auto field_owner = make_flow("eom1", {*f.objective, *method, 0.01});
  Flow& field = *field_owner;
  measure(state, *net, [&] {
    bench::move_to_fresh_point(f.theta);
    field(f.theta, f.out);
    benchmark::DoNotOptimize(f.out.data());
  });
}

// Its first part apart: the m batch gradients, one pass over the data (BatchPartition::gradients); the
// field's remaining cost is Σ_j H_j u_j, which reuses that pass.
void sgd_batch_gradients(benchmark::State& state, const Network* net, long batch) {
  Fixture f(*net);
  std::vector<std::vector<Index>> batches;
  const std::vector<Index> p = sgd_permutation(1, 0, net->samples);
  for (Index j = 0; j < net->samples / batch; ++j) batches.emplace_back(p.begin() + j * batch, p.begin() + (j + 1) * batch);
  const auto partition = f.objective->partitioned(batches);
  std::vector<Vector> g;
  measure(state, *net, [&] {
    bench::move_to_fresh_point(f.theta);
    partition->gradients(f.theta, g);
    benchmark::DoNotOptimize(g.back().data());
  });
}

// The same GEMMs as one gradient (shapes, transposes, the one gemm() of model/gemm.hpp), on plain
// matrices: the speed the gradient can hope for. W is read as the column-major Wᵀ, as the gradient does.
void gemms_of_gradient(benchmark::State& state, const Network* net) {
  use_one_blas_thread();  // as every Model does
  std::vector<Matrix> wt, a, d, z, g, e;
  for (std::size_t i = 0; i + 1 < net->widths.size(); ++i) {
    const Index in = net->widths[i], out = net->widths[i + 1];
    wt.push_back(Matrix::Random(in, out));
    a.push_back(Matrix::Random(in, net->samples));
    d.push_back(Matrix::Random(out, net->samples));
    z.emplace_back(out, net->samples);
    g.emplace_back(in, out);
    e.emplace_back(in, net->samples);
  }
  measure(state, *net, [&] {
    for (std::size_t i = 0; i < wt.size(); ++i) {
      gemm(1.0, wt[i], Op::transpose, a[i], Op::none, 0.0, z[i]);
      gemm(1.0, a[i], Op::none, d[i], Op::transpose, 0.0, g[i]);
      if (i > 0) gemm(1.0, wt[i], Op::none, d[i], Op::none, 0.0, e[i]);
    }
    benchmark::DoNotOptimize(z.back().data());
    benchmark::DoNotOptimize(g.back().data());
    benchmark::DoNotOptimize(e.back().data());
  });
}

}  // namespace

BENCHMARK_CAPTURE(gemms_of_gradient, reference, &reference)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(gradient, reference, &reference)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(hvp, reference, &reference)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(third_order, reference, &reference)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(field, reference_gf, &reference, 0)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(field, reference_eom1, &reference, 1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(field, reference_eom2, &reference, 2)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(field, reference_eom3, &reference, 3)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(method_field, reference_heavy_ball_eom1, &reference, "heavy_ball", 1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(method_field, reference_heavy_ball_eom2, &reference, "heavy_ball", 2)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(method_field, reference_nesterov_eom2, &reference, "nesterov", 2)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(method_field, reference_rmsprop_eom1, &reference, "rmsprop", 1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(method_field, reference_adam_eom1, &reference, "adam", 1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(sgd_eom1, reference_b32, &reference, 32)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(sgd_eom1, reference_b64, &reference, 64)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(sgd_eom1, reference_b128, &reference, 128)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(sgd_eom1, reference_b256, &reference, 256)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(sgd_eom1, reference_b1024, &reference, 1024)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(sgd_batch_gradients, reference_b32, &reference, 32)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(sgd_batch_gradients, reference_b128, &reference, 128)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(gemms_of_gradient, small, &small)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(gradient, small, &small)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(hvp, small, &small)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(third_order, small, &small)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(field, small_gf, &small, 0)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(field, small_eom1, &small, 1)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(field, small_eom2, &small, 2)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(field, small_eom3, &small, 3)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(method_field, small_heavy_ball_eom2, &small, "heavy_ball", 2)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(method_field, small_adam_eom1, &small, "adam", 1)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(sgd_eom1, small_b32, &small, 32)->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
