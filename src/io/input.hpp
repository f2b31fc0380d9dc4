// Readers for the input files of DESIGN.md §3.3. Every problem with a file (missing, unreadable,
// not HDF5, wrong datasets, wrong shape or type, NaN/Inf) is an InputError naming the config key and
// the file.
#pragma once
#include <string>

#include "core/config.hpp"
#include "core/dataset.hpp"

namespace eomlab::io {

// /X float [N, d] or [N, C, H, W] (the samples' shape); /y integer [N] (labels) or float [N, k] (targets).
// For mse, integer labels become one-hot targets over n_classes (max label + 1 if n_classes is 0; kept as
// labels if n_classes < 0, for a caller that knows the width).
Dataset read_data_file(const std::string& path, LossKind loss, Index n_classes, const std::string& key);

// The rows N that /X declares (for the memory estimate), without reading the data.
Index declared_samples(const std::string& path, const std::string& key);

// /theta float [P] with P = n_params.
Vector read_parameters_file(const std::string& path, Index n_params, const std::string& key);

}  // namespace eomlab::io
