// What one rank of a study needs in memory, estimated from the config before anything is allocated,
// so a study that cannot fit is refused at start (exit 2) instead of dying in std::bad_alloc.
// The model is calibrated on measured peaks (bench/memory.py, README "Memory"): per rank, a base of the
// process and its libraries; a few whole-length parameter vectors (θ gathered, reduce-scatter buffers);
// slices of the GD state, each flow's integrator and field vectors and the sharpness's Lanczos basis;
// the data set (loaded whole on every rank) and its shard's activations and derivative jets; for sgd,
// its batches' copies of the shard and what eom1 keeps of an epoch (diff/objective.hpp's PartitionPath).
#pragma once
#include <cstdint>
#include <string>

#include "core/config.hpp"
#include "model/model.hpp"

namespace eomlab {

struct MemoryEstimate {
  double parameter_bytes = 0;  // grows with model.layers
  double sample_bytes = 0;     // grows with the data's size
  double batch_bytes = 0;      // sgd's eom1: grows with the batches per epoch times the parameters
  double checkpoint_bytes = 0;  // a checkpoint's copy of the state while it is written: grows with them too
  double base_bytes = 0;
  double total() const { return parameter_bytes + sample_bytes + batch_bytes + checkpoint_bytes + base_bytes; }
};

// One rank of a run with n_params parameters on n_samples samples. A model.architecture's layer sizes
// come from its built `model` (the MLP's from model.layers).
MemoryEstimate estimate_rank_memory(const StudyConfig& config, Index n_params, Index n_samples,
                                    const Model* model = nullptr);

// The samples the study will use: data.n_samples, the rows /X of its data file declares, or the samples
// an image source's selection gives (read from its labels).
Index study_samples(const StudyConfig& config);

// What this node has available for all its ranks (core/memory.hpp), and what one process may still map
// under its address-space limit (0: none); measured once, before the data is read.
struct NodeMemory {
  double available = 0, address_space_left = 0;
  std::string source;
};
NodeMemory node_memory();

// "" when `ranks_on_node` ranks of the estimate fit in what this node has available, and one in its
// address space, else the line (naming the key that makes it large, the estimate and the available
// memory) to refuse the study with.
std::string memory_problem(const StudyConfig& config, const MemoryEstimate& estimate, int ranks_on_node,
                           const NodeMemory& node = node_memory());

// "about 1525.0 MiB per rank (...)" for --dry-run.
std::string describe_memory(const MemoryEstimate& estimate, const NodeMemory& node = node_memory());

}  // namespace eomlab
