// Seeded synthetic data sets and sharding of a data set across the ranks of a run.
#pragma once
#include <string>

#include "core/config.hpp"
#include "core/dataset.hpp"

namespace eomlab {

// gaussian_mixture: n_classes centres c_k ~ N(0, I_d); sample i has class i mod n_classes and
//   x = c_class + noise * N(0, I_d).
// teacher: x ~ N(0, I_d); a teacher network with the model's widths and activation, drawn from
//   data.seed, gives outputs z; labels are argmax z (cross-entropy), targets z + noise * N(0, I) (mse).
// Both depend only on data.seed and their sizes. For mse, mixture targets are one-hot. The samples have
// data.shape (unset: a vector of d features).
Dataset make_synthetic(const DataConfig& data, const ModelConfig& model);

// Whether data.source is one of the synthetic sources (gaussian_mixture, teacher), made from the config.
bool is_synthetic(const DataConfig& data);

// The samples' shape of a synthetic source: data.shape, or a vector of data.n_features.
Shape synthetic_shape(const DataConfig& data);

// One-hot targets (n_classes x samples) from labels; used when mse is trained on class labels.
Matrix one_hot(const std::vector<std::int64_t>& labels, Index n_classes);

// A labelled data set made mse's: its targets become the one-hot k x samples matrix of its labels, which
// it drops. Every label must be below k (the callers check it).
void labels_to_targets(Dataset& data, Index k);
// The same for labels a user gave (a data file, an image source, the Python module's y), refused with
// InputError "<where>: expected float64 targets [N, 1] ..." over one output, where every label 0 would
// become the target 1.
void given_labels_to_targets(Dataset& data, Index k, const std::string& where);

// Samples [begin, end) of rank `rank` among `ranks`: contiguous, sizes differ by at most one.
Dataset shard(const Dataset& full, int rank, int ranks);

}  // namespace eomlab
