#include "core/dataset.hpp"

#include "core/config.hpp"

namespace eomlab {

std::string unusable_values(const Eigen::Ref<const Matrix>& m) {
  if (!m.allFinite()) return "NaN or Inf";
  const double largest = m.size() > 0 ? m.cwiseAbs().maxCoeff() : 0.0;
  return largest > max_value_magnitude ? "values up to " + format_number(largest) + ", whose squares overflow" : "";
}

}  // namespace eomlab
