#include "diff/sharpness.hpp"

#include <cmath>
#include <limits>

#include "core/rng.hpp"

namespace eomlab {
namespace {

double dot(const Vector& a, const Vector& b, const Reducer& r) { return r.sum(a.dot(b)); }

constexpr std::uint64_t lanczos_seed = 0x5EED1A2C05ULL;

}  // namespace

Vector seeded_random_slice(Index begin, Index size, std::uint64_t seed) {
  Vector v(size);
  for (Index i = 0; i < size; ++i) {
    std::uint64_t x = seed ^ (static_cast<std::uint64_t>(begin + i) * 0xD1B54A32D192ED03ULL);
    v[i] = static_cast<double>(splitmix64(x) >> 11) * 0x1.0p-52 - 1.0;
  }
  return v;
}

SharpnessEstimator::SharpnessEstimator(int max_iterations, double rtol) : max_iterations_(max_iterations), rtol_(rtol) {}

Vector SharpnessEstimator::start_vector(const SliceExchange& slices) {
  const Index n = slices.local_size();
  // Every rank takes the same branch and makes the same reductions: a warm start non-finite on one
  // rank's slice only (an HVP that overflowed there) must not send the ranks into different collectives.
  const bool usable_here = start_.size() == n && start_.allFinite();
  const bool usable = slices.sum(usable_here ? 0.0 : 1.0) == 0.0;
  const bool warm = usable && dot(start_, start_, slices) > 0;
  return warm ? start_ : seeded_random_slice(slices.begin(), n, lanczos_seed);
}

SharpnessResult SharpnessEstimator::operator()(Objective& objective, const Vector& theta, const SliceExchange& slices,
                                               const std::function<bool()>& interrupt, const Vector* scale) {
  const Index n = theta.size();
  const Vector start = start_vector(slices);
  const int k_max = static_cast<int>(std::min<Index>(max_iterations_, std::max<Index>(slices.global_size(), 1)));
  basis_.resize(static_cast<std::size_t>(k_max));
  std::vector<double> alpha, beta;
  basis_[0] = start / std::sqrt(dot(start, start, slices));
  SharpnessResult result;
  Eigen::SelfAdjointEigenSolver<Matrix> eig;
  for (int j = 0; j < k_max; ++j) {
    if (interrupt && interrupt()) {
      result.interrupted = true;
      result.value = std::numeric_limits<double>::quiet_NaN();
      return result;
    }
    if (scale) {
      scaled_ = scale->cwiseProduct(basis_[static_cast<std::size_t>(j)]);
      objective.hessian_vector(theta, scaled_, w_);
      w_.array() *= scale->array();
    } else {
      objective.hessian_vector(theta, basis_[static_cast<std::size_t>(j)], w_);
    }
    ++result.iterations;
    // Full reorthogonalization (twice is enough) keeps the Ritz values clean.
    for (int pass = 0; pass < 2; ++pass)
      for (int i = 0; i <= j; ++i) {
        const Vector& q = basis_[static_cast<std::size_t>(i)];
        const double c = dot(q, w_, slices);
        if (pass == 0 && i == j) alpha.push_back(c);
        w_.noalias() -= c * q;
      }
    const double b = std::sqrt(dot(w_, w_, slices));
    const int m = j + 1;
    Matrix t = Matrix::Zero(m, m);
    for (int i = 0; i < m; ++i) {
      t(i, i) = alpha[static_cast<std::size_t>(i)];
      if (i + 1 < m) t(i, i + 1) = t(i + 1, i) = beta[static_cast<std::size_t>(i)];
    }
    eig.compute(t);
    const Index top = m - 1;  // eigenvalues ascending
    result.value = eig.eigenvalues()[top];
    const double residual = std::abs(b * eig.eigenvectors()(m - 1, top));
    if (residual <= rtol_ * std::abs(result.value) || b == 0.0 || j + 1 == k_max) {
      result.converged = residual <= rtol_ * std::abs(result.value) || b == 0.0;
      start_.setZero(n);
      for (int i = 0; i < m; ++i) start_.noalias() += eig.eigenvectors()(i, top) * basis_[static_cast<std::size_t>(i)];
      break;
    }
    beta.push_back(b);
    basis_[static_cast<std::size_t>(j + 1)] = w_ / b;
  }
  return result;
}

}  // namespace eomlab
