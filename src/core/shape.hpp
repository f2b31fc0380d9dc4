// The shape of one sample's features: C channels of H × W pixels, stored in a feature column in torch's
// order (channel, row, column; row-major). A vector of d features is the shape d × 1 × 1, so layers that
// work per channel (batchnorm) treat a vector's features as channels; it is not an image, while C × 1 × 1
// feature maps (a conv's or pool's output, 4-d data) are, as in torch.
#pragma once
#include <string>

#include "core/types.hpp"

namespace eomlab {

struct Shape {
  Index channels = 0, height = 1, width = 1;
  bool image = false;

  Shape() = default;
  Shape(Index features) : channels(features) {}  // NOLINT: a vector of features is a shape
  Shape(Index c, Index h, Index w) : channels(c), height(h), width(w), image(true) {}

  Index size() const { return channels * height * width; }
  Index pixels() const { return height * width; }
  bool is_vector() const { return !image; }
  // "784" for a vector, "1x28x28" for an image.
  std::string text() const {
    if (is_vector()) return std::to_string(channels);
    return std::to_string(channels) + "x" + std::to_string(height) + "x" + std::to_string(width);
  }
  bool operator==(const Shape& o) const {
    return channels == o.channels && height == o.height && width == o.width && image == o.image;
  }
  bool operator!=(const Shape& o) const { return !(*this == o); }
};

}  // namespace eomlab
