// Portable pseudo-random numbers: xoshiro256** seeded through splitmix64, with our own uniform and
// normal transforms, so a seed gives the same numbers with every compiler and standard library
// (std::normal_distribution is implementation-defined and is never used).
#pragma once
#include <cstdint>

namespace eomlab {

class Rng {
 public:
  // Independent streams for one seed are selected by `stream` (e.g. data vs. initialisation).
  explicit Rng(std::uint64_t seed, std::uint64_t stream = 0);
  // A generator in a given raw xoshiro256** state (for checking against reference vectors).
  static Rng from_state(std::uint64_t s0, std::uint64_t s1, std::uint64_t s2, std::uint64_t s3);
  std::uint64_t next_u64();
  double uniform();  // in [0, 1), 53 random bits
  double normal();   // standard normal (Box-Muller, one value per call)
  std::uint64_t below(std::uint64_t n);  // uniform integer in [0, n), n > 0

 private:
  Rng() = default;
  std::uint64_t s_[4];
};

// splitmix64 step: advances x and returns the next output (used for seeding).
std::uint64_t splitmix64(std::uint64_t& x);

namespace rng_stream {
inline constexpr std::uint64_t data = 1;
inline constexpr std::uint64_t init = 2;
inline constexpr std::uint64_t teacher = 3;
inline constexpr std::uint64_t probe = 4;  // the BLAS questions of model/gemm.cpp
inline constexpr std::uint64_t test = 99;
}  // namespace rng_stream

}  // namespace eomlab
