// The one-process benchmarks of a network's derivatives (bench_conv, bench_derivatives): a Fixture made
// from a Network (both the program's own) holds an objective at θ = initial_parameters(1) with random
// directions u, v; every evaluation is at a fresh point. Counters: GFLOPs, the products' operations counted
// by gemm() per second, and in_gradients, the time as a multiple of one gradient of the same network.
#pragma once
#include <benchmark/benchmark.h>

#include <chrono>
#include <map>
#include <memory>
#include <utility>

#include "bench_support.hpp"
#include "core/rng.hpp"
#include "diff/objective.hpp"
#include "model/gemm.hpp"

namespace eomlab::bench {

// What a Fixture holds: the objective of `model` on all of `data`, and u, v drawn from `r`.
struct Evaluation {
  std::unique_ptr<WholeVector> local;
  std::unique_ptr<ModelObjective> objective;
  Vector theta, u, v, out;

  Evaluation(Model model, Dataset data, Rng& r) {
    theta = model.initial_parameters(1);
    u.resize(theta.size());
    v.resize(theta.size());
    for (Index i = 0; i < v.size(); ++i) u[i] = r.normal(), v[i] = r.normal();
    const Index samples = data.n_samples();
    local = std::make_unique<WholeVector>(model.n_params());
    objective = std::make_unique<ModelObjective>(std::move(model), std::move(data), samples, 0.0, *local);
  }
};

// Seconds per gradient of a network (the fastest of 5 after a warm-up), measured once per network and
// process: the unit of in_gradients.
template <class Fixture, class Network>
double gradient_seconds(const Network& net) {
  static std::map<const Network*, double> measured;
  auto [it, inserted] = measured.try_emplace(&net, 0.0);
  if (inserted) {
    Fixture f(net);
    f.objective->value_and_gradient(f.theta, f.out);
    double best = 1e300;
    for (int r = 0; r < 5; ++r) {
      move_to_fresh_point(f.theta);
      const auto t0 = std::chrono::steady_clock::now();
      f.objective->value_and_gradient(f.theta, f.out);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    it->second = best;
  }
  return it->second;
}

// Runs the benchmark loop over `evaluate` and sets the two counters.
template <class Fixture, class Network, class F>
void measure(benchmark::State& state, const Network& net, F&& evaluate) {
  const double gradient = gradient_seconds<Fixture>(net);
  evaluate();  // untimed: buffers take their shapes (and pages) here, not in the first timed iteration
  const std::uint64_t flops0 = gemm_flops_so_far();
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) evaluate();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  state.counters["GFLOPs"] = benchmark::Counter(1e-9 * static_cast<double>(gemm_flops_so_far() - flops0) / seconds);
  state.counters["in_gradients"] = seconds / static_cast<double>(state.iterations()) / gradient;
}

template <class Fixture, class Network>
void gradient(benchmark::State& state, const Network& net) {
  Fixture f(net);
  measure<Fixture>(state, net, [&] {
    move_to_fresh_point(f.theta);
    benchmark::DoNotOptimize(f.objective->value_and_gradient(f.theta, f.out));
  });
}

template <class Fixture, class Network>
void hvp(benchmark::State& state, const Network& net) {
  Fixture f(net);
  measure<Fixture>(state, net, [&] {
    move_to_fresh_point(f.theta);
    f.objective->hessian_vector(f.theta, f.v, f.out);
    benchmark::DoNotOptimize(f.out.data());
  });
}

template <class Fixture, class Network>
void third_order(benchmark::State& state, const Network& net) {
  Fixture f(net);
  measure<Fixture>(state, net, [&] {
    move_to_fresh_point(f.theta);
    f.objective->third_order(f.theta, f.u, f.v, f.out);
    benchmark::DoNotOptimize(f.out.data());
  });
}

}  // namespace eomlab::bench
