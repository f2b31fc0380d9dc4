// A study's configuration after parsing and validation (cli/ builds it; everything else reads it).
// Invariants: every list is non-empty, lr > 0, steps > 0, layers has at least two widths, and the
// resolved INI text reproduces this configuration when parsed again.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/shape.hpp"
#include "core/types.hpp"

namespace eomlab {

enum class Activation { tanh, softplus, gelu, relu, silu };  // silu: in architectures only (not model.activation)
enum class LossKind { cross_entropy, mse };
enum class Normalization { none, layer, weight };
enum class Pixels { standard, unit };  // image sources: per-channel standardised | x / 255

struct DataConfig {
  std::string source = "gaussian_mixture";  // gaussian_mixture | teacher | hdf5 | fashion_mnist | idx | cifar10
  std::string path;  // the hdf5 file, the IDX prefix or folder, the CIFAR-10 folder, the Fashion-MNIST folder
  Index n_samples = 256;  // image sources: 0 takes the whole selection
  Index n_features = 0;  // 0: taken from model.layers
  Index n_classes = 0;   // 0: taken from model.layers
  double noise = 0.5;
  std::uint64_t seed = 0;
  Shape shape;  // synthetic sources: the samples' shape (channels 0: a vector of n_features)
  // Image sources (data/images.hpp):
  bool test_split = false;
  std::vector<std::int64_t> classes;  // labels kept, relabelled 0..k-1 in this order; empty: all, unchanged
  Pixels pixels = Pixels::standard;
};

struct ModelConfig {
  std::string architecture;  // DESIGN.md §3.6; empty: the MLP shorthand of layers, activation, normalize
  std::vector<Index> layers{16, 32, 32, 4};
  Activation activation = Activation::tanh;
  Normalization normalize = Normalization::none;
  LossKind loss = LossKind::cross_entropy;
  std::vector<double> weight_decay{0.0};
  std::string init_path;  // empty: default initialisation from the seed
};

enum class BatchOrder { fixed, reshuffle };  // sgd: one permutation from the seed, or a new one every epoch

// The hyperparameters of the methods beyond GD (DESIGN.md §1.5, §3.7); each method reads those its
// registration names (flow/method.hpp), with its defaults.
struct MethodSettings {
  double momentum = 0.9;                     // β of heavy_ball and nesterov
  double beta1 = 0.9, beta2 = 0.999;         // adam; rmsprop's alpha is beta2 (its default there is 0.99)
  double eps = 1e-8;                         // adam, rmsprop
  long batch_size = 0;                       // sgd: samples per minibatch (divides the data set)
  BatchOrder order = BatchOrder::fixed;      // sgd
};
// MethodSettings' fields by their [optimizer] keys.
inline const std::vector<std::string> method_setting_keys{"momentum", "beta1", "beta2", "eps", "batch_size", "order"};

struct OptimizerConfig {
  std::string method = "gd";  // a name of the method registry (flow/method.hpp); DESIGN.md §3.7's default
  MethodSettings settings;
  std::vector<double> lr{0.05};
  long steps = 0;       // exactly one of steps and horizon is set (> 0)
  double horizon = 0.0;
  long record_every = 1;
  double divergence_factor = 1e6;  // a run has diverged once GD's loss exceeds this factor of L(θ0)
};

struct FlowsConfig {
  std::vector<std::string> kinds{"gf", "eom1"};  // names of the flow registry (flow/flow.hpp)
  double rtol = 1e-10;
  double atol = 1e-12;
  long max_steps = 100000;  // per flow and run; a flow that needs more is recorded as failed
  bool start_correction = true;  // eomP of a method with memory starts from θ0* (DESIGN.md §1.5), or from θ0
};

struct OutputConfig {
  bool store_theta = true;
  bool sharpness = true;  // λ_max(H) along GD at every record
  bool rates = false;     // predicted and measured rates of ‖θ_A‖² at the discrete iterates (DESIGN.md §3.8)
  std::vector<std::string> observables;  // further observables of the registry (flow/observable.hpp) by name
  long checkpoint_every = 0;
  double progress_every = 5.0;  // seconds between a run's progress lines; 0: its first and last only
};

struct StudyConfig {
  std::string name = "eomlab";
  std::string output = "results";
  std::vector<std::uint64_t> seeds{0};
  int ranks_per_run = 1;
  DataConfig data;
  ModelConfig model;
  OptimizerConfig optimizer;
  FlowsConfig flows;
  OutputConfig output_options;
  std::string resolved_text;  // the full INI, defaults included
};

// One point of the sweep grid (seed x lr x weight_decay).
struct RunSpec {
  int index = 0;
  std::string run_id;
  double lr = 0;
  std::uint64_t seed = 0;
  double weight_decay = 0;
  long steps = 0;
};

// The sweep grid in order lr, seed, weight_decay. Run ids are unique when the lists' values are distinct
// (the parser refuses repeats): lr and weight_decay are spelled by format_number.
std::vector<RunSpec> expand_grid(const StudyConfig& config);

// A number as run ids and the resolved INI text spell it: "%.6g" when that reads back as exactly x (0.1,
// 1e-10, 60), else the fewest more significant digits that do (0.1000001): distinct numbers, distinct text.
std::string format_number(double x);

const char* to_string(Activation a);
const char* to_string(LossKind l);
const char* to_string(Normalization n);

}  // namespace eomlab
