// Basic numeric types: float64 everywhere, Eigen dense storage.
#pragma once
#include <Eigen/Dense>
#include <cstdint>

namespace eomlab {

using Vector = Eigen::VectorXd;
using Matrix = Eigen::MatrixXd;  // column-major; batches are stored features x samples
using RowMajorMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Index = Eigen::Index;

}  // namespace eomlab
