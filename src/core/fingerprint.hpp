// A 64-bit fingerprint of named values: the sum (mod 2^64) over every value of a mix of its name, its
// position and its bits. Parts added anywhere (each rank its slices of a vector) sum to the whole's, so it
// does not depend on how values are split; a changed bit anywhere changes it. It tells whether data are
// the same as before (checkpoints, a study's inputs on --resume); it is no cryptographic hash.
#pragma once
#include <cstdint>
#include <string>

#include "core/dataset.hpp"
#include "core/types.hpp"

namespace eomlab {

class Fingerprint {
 public:
  void add(const std::string& name, std::uint64_t position, std::uint64_t bits) { add(hash(name), position, bits); }
  void add(const std::string& name, std::uint64_t first, const double* values, std::size_t n);
  void add(const std::string& name, std::uint64_t first, const std::uint8_t* values, std::size_t n);
  void add_text(const std::string& name, const std::string& text);
  // Adds another part's value (sums are exact mod 2^64).
  void add_part(std::uint64_t part) { sum_ += part; }
  std::uint64_t value() const { return sum_; }
  // value() as 16 hexadecimal digits.
  std::string hex() const;

 private:
  static std::uint64_t hash(const std::string& name);
  void add(std::uint64_t name_hash, std::uint64_t position, std::uint64_t bits);
  std::uint64_t sum_ = 0;
};

// Of a data set's samples: their shape, labels and (with `values`) features and targets, the features as
// stored (data.stored_fingerprint where it has one).
std::string data_fingerprint(const Dataset& data, bool values = true);
// Of a parameter vector (model.init's θ0).
std::string vector_fingerprint(const Vector& v);

}  // namespace eomlab
