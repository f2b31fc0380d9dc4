#include "data/synthetic.hpp"

#include "core/error.hpp"
#include "core/rng.hpp"
#include "model/model.hpp"

namespace eomlab {

Matrix one_hot(const std::vector<std::int64_t>& labels, Index n_classes) {
  Matrix t = Matrix::Zero(n_classes, static_cast<Index>(labels.size()));
  for (std::size_t i = 0; i < labels.size(); ++i) t(static_cast<Index>(labels[i]), static_cast<Index>(i)) = 1.0;
  return t;
}

void labels_to_targets(Dataset& data, Index k) {
  data.targets = one_hot(data.labels, k);
  data.labels.clear();
}

void given_labels_to_targets(Dataset& data, Index k, const std::string& where) {
  if (k < 2)
    throw InputError(where + ": expected float64 targets [N, 1] for mse with one output, got integer labels "
                             "(mse makes them one-hot, which needs 2 outputs or more)");
  labels_to_targets(data, k);
}

bool is_synthetic(const DataConfig& data) { return data.source == "gaussian_mixture" || data.source == "teacher"; }

Shape synthetic_shape(const DataConfig& data) {
  return data.shape.channels > 0 ? data.shape : Shape(data.n_features);
}

Dataset make_synthetic(const DataConfig& data, const ModelConfig& model) {
  const Index d = data.n_features, k = data.n_classes, n = data.n_samples;
  Rng rng(data.seed, rng_stream::data);
  Dataset out;
  out.x.resize(d, n);
  out.sample_shape = data.shape;
  if (data.source == "gaussian_mixture") {
    Matrix centres(d, k);
    for (Index j = 0; j < k; ++j)
      for (Index f = 0; f < d; ++f) centres(f, j) = rng.normal();
    out.labels.resize(static_cast<std::size_t>(n));
    for (Index i = 0; i < n; ++i) {
      const Index c = i % k;
      out.labels[static_cast<std::size_t>(i)] = c;
      for (Index f = 0; f < d; ++f) out.x(f, i) = centres(f, c) + data.noise * rng.normal();
    }
    if (model.loss == LossKind::mse) labels_to_targets(out, k);
  } else if (data.source == "teacher") {
    for (Index i = 0; i < n; ++i)
      for (Index f = 0; f < d; ++f) out.x(f, i) = rng.normal();
    ModelConfig network = model;  // the student's hidden widths and activation, plain, for d inputs and k outputs
    network.layers.front() = d;
    network.layers.back() = k;
    network.normalize = Normalization::none;
    network.loss = LossKind::mse;
    const Model teacher = make_model(network, synthetic_shape(data));
    const Matrix z = teacher.outputs(teacher.initial_parameters(data.seed ^ 0x7EAC4E5ULL), out.x);
    if (model.loss == LossKind::cross_entropy) {
      out.labels.resize(static_cast<std::size_t>(n));
      for (Index i = 0; i < n; ++i) {
        Index best;
        z.col(i).maxCoeff(&best);
        out.labels[static_cast<std::size_t>(i)] = best;
      }
    } else {
      out.targets = z;
      for (Index i = 0; i < n; ++i)
        for (Index j = 0; j < k; ++j) out.targets(j, i) += data.noise * rng.normal();
    }
  } else {
    throw Error("make_synthetic: unknown source '" + data.source + "'");
  }
  for (const Matrix* values : {&out.x, &out.targets})  // the noise scales them; the rest is of order 1
    if (const std::string found = unusable_values(*values); !found.empty())
      throw InputError(std::string("data.noise: expected synthetic data of ") + usable_values_text + ", got " + found);
  return out;
}

Dataset shard(const Dataset& full, int rank, int ranks) {
  const Index n = full.n_samples();
  const Index begin = n * rank / ranks, end = n * (rank + 1) / ranks;
  Dataset s;
  s.x = full.x.middleCols(begin, end - begin);
  s.sample_shape = full.sample_shape;
  if (full.has_labels())
    s.labels.assign(full.labels.begin() + begin, full.labels.begin() + end);
  else
    s.targets = full.targets.middleCols(begin, end - begin);
  return s;
}

}  // namespace eomlab
