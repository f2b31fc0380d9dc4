// Models in several threads at once, as the Python module runs them (its objectives evaluate without the
// GIL, one evaluation per objective at a time, any number of objectives at once). Built with the model
// code under ThreadSanitizer (tests/CMakeLists.txt), which makes the program exit non-zero on any data
// race; the program itself fails if a threaded evaluation's bits differ from the same evaluation made
// afterwards in one thread. Each evaluation also makes a method and its eom1 flow, as the module does.
// The threads go first, while the shared state (gemm's column-block probe and its remembered answers, the
// flop count, the method and flow registries, the counter-term tables) is still empty, so that they fill
// it at the same time; each thread's networks
// have shapes of their own, so each asks the probe new questions.
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "core/slices.hpp"
#include "diff/objective.hpp"
#include "flow/flow.hpp"
#include "flow/method.hpp"
#include "support/images.hpp"
#include "support/random_vector.hpp"

using namespace eomlab;

namespace {

struct Network {
  std::string architecture;
  Shape input;
  Index samples, classes;
};

struct Results {
  Vector g, hv, t, field;
};

Results evaluate(const Network& net) {
  ModelConfig config;
  config.architecture = net.architecture;
  Model model = make_model(config, net.input);
  Dataset d = test::random_images(net.input, net.samples, LossKind::cross_entropy, net.classes, 3);
  const Vector theta = model.initial_parameters(1), u = test::random_vector(theta.size(), 4),
               v = test::random_vector(theta.size(), 5);
  WholeVector whole(model.n_params());
  ModelObjective objective(std::move(model), std::move(d), net.samples, 0.0, whole);
  // As the Python module's Objective.field: a method and its flow made for the objective (first, so that
  // the threads ask the method and flow registries at the same time), then one field evaluation.
  const double lr = 0.1;
  const std::unique_ptr<Method> gd = make_method("gd", {objective, lr});
  const std::unique_ptr<Flow> eom1 = make_flow("eom1", {objective, *gd, lr});
  Results out;
  objective.value_and_gradient(theta, out.g);
  objective.hessian_vector(theta, v, out.hv);
  objective.third_order(theta, u, v, out.t);
  (*eom1)(theta, out.field);
  return out;
}

bool same_bits(const Vector& a, const Vector& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(double) * static_cast<std::size_t>(a.size())) == 0;
}

// Thread k's networks: convs of k-dependent widths (new shapes for the probe), one with batchnorm and a
// residual block, and an MLP.
std::vector<Network> networks_of(int k) {
  const std::string w = std::to_string(3 + k), classes = std::to_string(3 + k);
  return {
      {"conv(" + w + ", 3, pad=1), tanh, avgpool(2), conv(" + w + ", 3, pad=1), tanh, avgpool(2), flatten, dense(" + classes + ")",
       {1, 8, 8}, 12 + 2 * k, 3 + k},
      {"conv(" + w + ", 3, pad=1), batchnorm, relu, residual(conv(" + w + ", 3, pad=1), batchnorm, tanh), globalavgpool, dense(" + classes + ")",
       {2, 6, 6}, 10 + k, 3 + k},
      {"dense(" + std::to_string(7 + k) + "), tanh, dense(" + classes + ")", Shape(5), 9 + k, 3 + k},
  };
}

}  // namespace

int main() {
  constexpr int threads = 2;
  std::vector<std::vector<Results>> threaded(threads);
  std::vector<std::thread> pool;
  for (int k = 0; k < threads; ++k)
    pool.emplace_back([k, &threaded] {
      for (const Network& net : networks_of(k)) threaded[static_cast<std::size_t>(k)].push_back(evaluate(net));
    });
  for (std::thread& t : pool) t.join();
  int failures = 0;
  for (int k = 0; k < threads; ++k) {
    const std::vector<Network> nets = networks_of(k);
    for (std::size_t i = 0; i < nets.size(); ++i) {
      const Results alone = evaluate(nets[i]), & together = threaded[static_cast<std::size_t>(k)][i];
      for (const auto& [name, a, b] : {std::tuple{"gradient", &alone.g, &together.g}, std::tuple{"hvp", &alone.hv, &together.hv},
                                       std::tuple{"third_order", &alone.t, &together.t}, std::tuple{"eom1 field", &alone.field, &together.field}})
        if (!same_bits(*a, *b)) {
          std::fprintf(stderr, "model_threads: %s of '%s' differs between its thread and one thread alone\n", name,
                       nets[i].architecture.c_str());
          ++failures;
        }
    }
  }
  std::printf("model_threads: %d networks in %d threads, %d differences\n", threads * 3, threads, failures);
  return failures == 0 ? 0 : 1;
}
