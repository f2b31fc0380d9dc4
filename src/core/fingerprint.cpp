#include "core/fingerprint.hpp"

#include <cstdio>
#include <cstring>

#include "core/rng.hpp"

namespace eomlab {

std::uint64_t Fingerprint::hash(const std::string& name) {
  std::uint64_t h = 0xCBF29CE484222325ULL;  // FNV-1a
  for (const char ch : name) h = (h ^ static_cast<unsigned char>(ch)) * 0x100000001B3ULL;
  return h;
}

void Fingerprint::add(std::uint64_t name_hash, std::uint64_t position, std::uint64_t bits) {
  std::uint64_t x = name_hash + position * 0xD1B54A32D192ED03ULL;
  std::uint64_t y = splitmix64(x) ^ bits;
  sum_ += splitmix64(y);
}

void Fingerprint::add(const std::string& name, std::uint64_t first, const double* values, std::size_t n) {
  const std::uint64_t h = hash(name);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t bits;
    std::memcpy(&bits, &values[i], sizeof bits);
    add(h, first + i, bits);
  }
}

void Fingerprint::add(const std::string& name, std::uint64_t first, const std::uint8_t* values, std::size_t n) {
  const std::uint64_t h = hash(name);
  for (std::size_t i = 0; i < n; ++i) add(h, first + i, values[i]);
}

void Fingerprint::add_text(const std::string& name, const std::string& text) {
  for (std::size_t i = 0; i < text.size(); ++i) add(name, i, static_cast<unsigned char>(text[i]));
  add(name, text.size(), 256);
}

std::string Fingerprint::hex() const {
  char digits[17];
  std::snprintf(digits, sizeof digits, "%016llx", static_cast<unsigned long long>(sum_));
  return digits;
}

std::string data_fingerprint(const Dataset& data, bool values) {
  Fingerprint f;
  f.add_text("shape", data.shape().text());
  for (std::size_t i = 0; i < data.labels.size(); ++i) f.add("labels", i, static_cast<std::uint64_t>(data.labels[i]));
  if (!values) return f.hex();
  if (data.stored_fingerprint.empty())
    f.add("x", 0, data.x.data(), static_cast<std::size_t>(data.x.size()));
  else
    f.add_text("stored x", data.stored_fingerprint);
  f.add("targets", 0, data.targets.data(), static_cast<std::size_t>(data.targets.size()));
  return f.hex();
}

std::string vector_fingerprint(const Vector& v) {
  Fingerprint f;
  f.add("theta", 0, v.data(), static_cast<std::size_t>(v.size()));
  return f.hex();
}

}  // namespace eomlab
