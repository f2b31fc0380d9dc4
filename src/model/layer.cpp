#include "model/layer.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "core/error.hpp"
#include "model/dense_path.hpp"

namespace eomlab {

std::string LayerSpec::text() const {
  std::string out = name;
  for (std::size_t i = 0; i < args.size(); ++i) out += (i == 0 ? "(" : ", ") + args[i];
  return args.empty() ? out : out + ")";
}

void LayerSpec::refuse(const std::string& what) const {
  throw LayerError(text(), "expected " + what);
}

long LayerSpec::whole(const std::string& arg, const std::string& usage) const {
  const bool digits = !arg.empty() && arg.size() <= 10 &&
                      std::all_of(arg.begin(), arg.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
  const long value = digits ? std::stol(arg) : 0;
  if (value <= 0 || value > std::numeric_limits<int>::max()) refuse(usage);  // sizes are int on the MPI and HDF5 side
  return value;
}

double LayerSpec::number(const std::string& arg, const std::string& usage) const {
  const bool decimal = !arg.empty() && arg.find_first_not_of("0123456789+-.eE") == std::string::npos;
  char* end = nullptr;
  const double value = decimal ? std::strtod(arg.c_str(), &end) : 0.0;
  if (!decimal || end != arg.c_str() + arg.size() || !std::isfinite(value)) refuse(usage);
  // A non-zero number below the smallest normal double is refused: under the smallest double it was read as
  // 0 (an adversarial review: batchnorm's eps=1e-400 ran as eps 0, scale-invariant blocks and all), and a
  // subnormal one made a run fail (its respelling did not read back).
  const bool nonzero_text = arg.substr(0, arg.find_first_of("eE")).find_first_of("123456789") != std::string::npos;
  if (nonzero_text && std::fabs(value) < std::numeric_limits<double>::min())
    refuse(usage + ", got " + arg + ": a non-zero number must be at least 2.2250738585072014e-308 in magnitude");
  return value;
}

unsigned BackwardPass::wanted() const {
  const int top = (1 << m) - 1;
  return (1u << top) | (first ? 1u << 1 : 0u);
}

void BackwardPass::write(const Jet& gradient, Index offset, Index rows, Index cols) const {
  const auto write_component = [&](int s, Vector& target_vector) {
    Eigen::Map<RowMajorMatrix> target(target_vector.data() + offset, rows, cols);
    if (gradient.nz[static_cast<std::size_t>(s)])
      target = gradient.c[static_cast<std::size_t>(s)];
    else
      target.setZero();
  };
  write_component((1 << m) - 1, out);
  if (first) write_component(1, *first);
}

void Layer::plan_dense_path(DensePathPlan& plan) const { plan.reject(); }
void LossHead::plan_dense_path(DensePathPlan& plan) const { plan.reject(); }

}  // namespace eomlab
