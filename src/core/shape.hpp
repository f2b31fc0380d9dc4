// The shape of one sample's features: C channels of H × W pixels, stored in a feature column in torch's
// order (channel, row, column; row-major). A vector of d features is the shape d × 1 × 1, so layers that
// work per channel (batchnorm) treat a vector's features as channels; it is not an image, while C × 1 × 1
// feature maps (a conv's or pool's output, 4-d data) are, as in torch.
#pragma once
#include <optional>
#include <string>
#include <vector>

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
  // The shape whose text() is `text` ("784", "1x28x28"); none for any other text.
  static std::optional<Shape> from_text(const std::string& text) {
    std::vector<Index> sizes{0};
    for (const char ch : text) {
      if (ch == 'x' && sizes.size() < 3) {
        sizes.push_back(0);
      } else if (ch >= '0' && ch <= '9' && sizes.back() < (Index(1) << 40)) {
        sizes.back() = 10 * sizes.back() + (ch - '0');
      } else {
        return std::nullopt;
      }
    }
    for (const Index n : sizes)
      if (n <= 0) return std::nullopt;
    if (sizes.size() == 1) return Shape(sizes[0]);
    if (sizes.size() == 3) return Shape(sizes[0], sizes[1], sizes[2]);
    return std::nullopt;
  }
  bool operator==(const Shape& o) const {
    return channels == o.channels && height == o.height && width == o.width && image == o.image;
  }
  bool operator!=(const Shape& o) const { return !(*this == o); }
};

}  // namespace eomlab
