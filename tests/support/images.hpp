// Random image data sets for tests of the image layers.
#pragma once
#include <cstdint>

#include "core/dataset.hpp"
#include "core/rng.hpp"
#include "core/shape.hpp"
#include "core/config.hpp"

namespace eomlab::test {

// n samples of standard normal pixels; labels in [0, classes) or standard normal targets.
inline Dataset random_images(const Shape& shape, Index n, LossKind loss, Index outputs, std::uint64_t seed) {
  Rng r(seed, rng_stream::test);
  Dataset d;
  d.sample_shape = shape;
  d.x.resize(shape.size(), n);
  for (Index i = 0; i < d.x.size(); ++i) d.x.data()[i] = r.normal();
  if (loss == LossKind::cross_entropy) {
    for (Index s = 0; s < n; ++s) d.labels.push_back(static_cast<std::int64_t>(r.below(static_cast<std::uint64_t>(outputs))));
  } else {
    d.targets.resize(outputs, n);
    for (Index i = 0; i < d.targets.size(); ++i) d.targets.data()[i] = r.normal();
  }
  return d;
}

}  // namespace eomlab::test
