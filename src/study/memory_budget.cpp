#include "study/memory_budget.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <limits>

#include "core/memory.hpp"
#include "data/images.hpp"
#include "diff/objective.hpp"
#include "flow/dop853.hpp"
#include "io/input.hpp"

namespace eomlab {
namespace {

constexpr double mib = 1024.0 * 1024.0;

// Slices of parameter length per flow: the integrator's 29 (DOP853 stages, dense output, state) and the
// vector field's work vectors, more for higher orders (measured).
// A flow's EoM order from its name (gf: 0, eomP: P); a flow of another kind counts as the highest.
int order_of(const std::string& flow) {
  if (flow == "gf") return 0;
  if (flow.rfind("eom", 0) == 0 && flow.size() == 4 && std::isdigit(static_cast<unsigned char>(flow[3]))) return flow[3] - '0';
  return 3;
}

double vectors_per_flow(const std::string& flow) {
  static const double by_order[] = {29, 40, 42, 45};
  return by_order[std::min(order_of(flow), 3)];
}

// Address space a rank of `resident` bytes maps: the estimate errs low by up to a fifth, and the allocator's
// arenas and the BLAS's buffers map more than they touch.
double mapped_bytes(double resident) { return 1.25 * resident + 256 * mib; }

std::string bytes_text(double bytes) {
  char buf[64];
  if (bytes >= 10 * 1024 * mib)
    std::snprintf(buf, sizeof buf, "%.1f GiB", bytes / (1024 * mib));
  else
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / mib);
  return buf;
}

// sgd (flow/sgd.cpp): the method's batches copy the shard's samples in batch order, and so do an eom1
// flow's; that flow keeps an epoch's m batch gradients (slices, and whole on each rank where the run has
// several and they are evaluated together) or, through the data's Gram matrix, its N x N mask and the
// gradients but for the first layer's weights. So does
// eom0 where the batches have their own statistics (batchnorm), one by one.
void add_sgd_batches(const StudyConfig& c, double p, double n, double per_sample, const Model* model, MemoryEstimate& e) {
  const long b = c.optimizer.settings.batch_size;
  if (c.optimizer.method != "sgd" || b <= 0) return;
  const auto flow = [&](const char* kind) { return std::count(c.flows.kinds.begin(), c.flows.kinds.end(), kind) > 0; };
  const bool eom1 = flow("eom1"), eom0 = flow("eom0") && model && model->couples_samples();
  const double r = c.ranks_per_run, shard = std::ceil(n / r), m = std::floor(n / static_cast<double>(b));
  // With rates each flow has a second instance for its field at the iterates, whose batches on several ranks
  // are its own (a review: sgd's eom1 with rates on 2 ranks peaked at 1.45x the estimate; on one rank the
  // batch gradients are the model's, shared).
  const double copies = c.output_options.rates && r > 1 ? 2 : 1;
  e.sample_bytes += 8 * (1 + copies * (eom1 + eom0)) * shard * per_sample;
  if (eom0) e.batch_bytes += copies * 8 * m * std::ceil(p / r);
  if (!eom1) return;
  const bool together = model ? model->evaluates_blocks_together()
                              : c.model.architecture.empty() && c.model.normalize == Normalization::none;
  const Index width = model ? model->input_shape().size() : c.model.layers.front();
  const Index params = p < 9e18 ? static_cast<Index>(p) : std::numeric_limits<Index>::max();
  double kept = 0;  // the eom1 flow's batch gradients (or their mask)
  switch (partition_path(together, c.ranks_per_run, static_cast<Index>(n), static_cast<Index>(m), width, params)) {
    case PartitionPath::gram: {
      // The mask, and the m block gradients but for the first layer's weights, which go through the mask and
      // are never written (a review: 64,1024,1024,10 on 128 samples in batches of 1 peaked at 1.9x without them).
      const double first_weights = model ? static_cast<double>(model->blocks().front().size)
                                         : static_cast<double>(c.model.layers[0]) * static_cast<double>(c.model.layers[1]);
      kept = 8 * n * n + 8 * m * std::max(0.0, p - first_weights);
      break;
    }
    case PartitionPath::blocks:
      kept = 8 * m * (std::ceil(p / r) + (r > 1 ? p : 0));
      break;
    case PartitionPath::one_by_one:
      kept = 8 * m * std::ceil(p / r);
      break;
  }
  e.batch_bytes += copies * kept;
}

// Doubles an architecture's passes hold on a shard of `shard` samples when evaluations go up to `order`
// directions. A jet component's buffers keep the size of the largest pass that used it: component 0 the
// gradient's (the whole shard, or chunks of it: Model::samples_per_pass), component 1 that of a pass in
// one direction, components 2 and 3 in two. Per sample the layers hold held_size() (times a factor
// measured on conv, pooling, normalization and residual nets: 0.91-1.24x their peaks: the allocator's and
// the scratch jets' share); besides, the input as a jet and, when chunked, a chunk's copy of the samples.
// Where the dense fast path applies, gradients and HVPs take the whole shard (a review: dense(2048), tanh,
// dense(3) on 30000 samples was estimated at 0.36x its peak from the jet path's chunks).
double architecture_pass_doubles(const Model& model, int order, double shard, double per_sample) {
  constexpr double held_factor = 1.25;
  const bool whole = model.evaluates_blocks_together();
  const auto rows = [&](int directions) {
    return whole && directions <= 1 ? shard : std::min(shard, static_cast<double>(model.samples_per_pass(directions)));
  };
  double component_rows = 0, chunk = 0;
  for (int m = 0; m <= order; ++m) {
    component_rows += (m == 0 ? 1 : 1 << (m - 1)) * rows(m);  // the components whose highest direction is m
    if (rows(m) < shard) chunk = std::max(chunk, rows(m));
  }
  const HeldSize held = model.held_size();
  return held_factor * (component_rows * static_cast<double>(held.every_component) +
                        rows(0) * static_cast<double>(held.value_only)) +
         rows(0) * static_cast<double>(model.input_shape().size()) + chunk * per_sample;
}

}  // namespace

MemoryEstimate estimate_rank_memory(const StudyConfig& c, Index n_params, Index n_samples, const Model* model) {
  // The dense layers' parameter count in double as well: widths near 2^31 give a count beyond Index,
  // which wraps (a negative or small n_params would pass for a study that fits).
  const bool architecture = model && !c.model.architecture.empty();
  double dense = 0;
  for (std::size_t i = 0; i + 1 < c.model.layers.size() && !architecture; ++i)
    dense += (static_cast<double>(c.model.layers[i]) + 1) * static_cast<double>(c.model.layers[i + 1]);
  const double r = c.ranks_per_run, p = std::max(static_cast<double>(n_params), dense),
               n = static_cast<double>(n_samples);
  int order = c.output_options.sharpness ? 1 : 0;  // highest derivative order of a jet (sharpness: HVPs)
  double sliced = 2 + (c.output_options.sharpness ? 32 : 0);  // GD's state; the Lanczos basis
  // A checkpoint (output.checkpoint_every, or a stop signal at any step) copies each flow's state and θ,
  // the method's state and the sharpness warm starts while it is written (an adversarial review: stopped
  // runs peaked at 0.56-0.62x an estimate without it).
  double checkpoint = 4;
  for (const std::string& k : c.flows.kinds) {
    sliced += vectors_per_flow(k) + (c.output_options.rates ? 1 : 0);  // rates: F(θ_k) of each flow
    checkpoint += Dop853::exported_vectors + 1;
    order = std::max(order, std::min(order_of(k), 2));
  }
  // An MLP's pass holds, per sample of the whole shard, doubles by jet order (measured: bench/memory.py and
  // the peaks of the study's own runs) per width of its hidden and output layers, plus for T a copy of the
  // input and a fixed amount.
  double per_sample = 0, pass = 0;
  const double shard = std::ceil(n / r);
  if (architecture) {
    per_sample = static_cast<double>(model->input_shape().size() + model->n_outputs());
    pass = architecture_pass_doubles(*model, order, shard, per_sample);
  } else {
    static const double hidden_jets[] = {6, 9.8, 13}, input_jets[] = {0, 0, 1}, fixed[] = {0, 0, 1150};
    double hidden = 0;
    for (std::size_t i = 1; i < c.model.layers.size(); ++i) hidden += static_cast<double>(c.model.layers[i]);
    const auto input = static_cast<double>(c.model.layers.front());
    per_sample = input + static_cast<double>(c.model.layers.back());
    pass = shard * (hidden_jets[order] * hidden + input_jets[order] * input + fixed[order]);
  }
  MemoryEstimate e;
  // Layers keeping more of parameter size, on every rank and per jet component (an adversarial review:
  // weightnorm nets of 2.6 M parameters peaked at up to 1.18x the estimate without it).
  const double layers_held = model ? static_cast<double>(model->held_parameters().total()) * (1 << order) : 0;
  e.parameter_bytes = 8 * (7 * p + sliced * std::ceil(p / r) + layers_held);
  e.checkpoint_bytes = 8 * checkpoint * std::ceil(p / r);
  // The data set, the run's copy of its shard, and the passes.
  e.sample_bytes = 8 * (n * per_sample + shard * per_sample + pass);
  e.base_bytes = 30 * mib;
  add_sgd_batches(c, p, n, per_sample, model, e);
  return e;
}

Index study_samples(const StudyConfig& c) {
  if (c.data.source == "hdf5") return io::declared_samples(c.data.path, "data.source");
  return is_image_source(c.data.source) ? count_images(c.data) : c.data.n_samples;
}

NodeMemory node_memory() {
  NodeMemory m;
  m.available = static_cast<double>(available_memory_bytes(&m.source));
  m.address_space_left = static_cast<double>(address_space_left_bytes());
  return m;
}

std::string memory_problem(const StudyConfig& c, const MemoryEstimate& e, int ranks_on_node, const NodeMemory& node) {
  // Whether `ranks_on_node` ranks of `bytes` each fit the node, and one the process's address space.
  const auto node_fits = [&](double bytes) { return node.available <= 0 || bytes * ranks_on_node <= node.available; };
  const auto process_fits = [&](double bytes) {
    return node.address_space_left <= 0 || mapped_bytes(bytes) <= node.address_space_left;
  };
  const bool node_short = !node_fits(e.total());
  if (!node_short && process_fits(e.total())) return "";
  const std::string network = c.model.architecture.empty() ? "model.layers" : "model.architecture";
  // batch_size is named when the study would fit without what the batches add (a larger batch size helps).
  const double without_batches = e.total() - e.batch_bytes;
  const bool batches = e.batch_bytes > 0 && node_fits(without_batches) && process_fits(without_batches);
  const std::string key = batches                                   ? "optimizer.batch_size"
                          : e.parameter_bytes + e.checkpoint_bytes >= e.sample_bytes ? network
                          : c.data.source == "hdf5" ? "data.source: '" + c.data.path + "'"
                                                    : "data.n_samples";
  const std::string got = "expected a study that fits in memory, got an estimated " + bytes_text(e.total()) + " per rank";
  if (!node_short)
    return key + ": " + got + ", which with the process's other mappings needs about " + bytes_text(mapped_bytes(e.total())) +
           " of address space, " + bytes_text(node.address_space_left) + " left under its limit (ulimit -v)";
  return key + ": " + got + " × " + std::to_string(ranks_on_node) + " rank(s) on this node, " +
         bytes_text(node.available) + " available (" + node.source + ")";
}

std::string describe_memory(const MemoryEstimate& e, const NodeMemory& node) {
  return "memory: about " + bytes_text(e.total()) + " per rank (estimate); " + bytes_text(node.available) +
         " available on this node (" + node.source + ") for all its ranks" +
         (node.address_space_left > 0 ? ", " + bytes_text(node.address_space_left) + " of address space per process" : "");
}

}  // namespace eomlab
