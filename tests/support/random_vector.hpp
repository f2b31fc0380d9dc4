// A vector of standard normal entries from the tests' own RNG stream: directions and perturbations.
#pragma once
#include <cstdint>

#include "core/rng.hpp"
#include "core/types.hpp"

namespace eomlab::test {

inline Vector random_vector(Index n, std::uint64_t seed) {
  Rng r(seed, rng_stream::test);
  Vector v(n);
  for (Index i = 0; i < n; ++i) v[i] = r.normal();
  return v;
}

}  // namespace eomlab::test
