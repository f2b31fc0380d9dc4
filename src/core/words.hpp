// Names that become HDF5 group names, config keys and sections, list items and table columns: words.
#pragma once
#include <string>

namespace eomlab {

// A letter, then letters, digits and '_'.
inline bool is_word(const std::string& name) {
  const auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (name.empty() || !letter(name[0])) return false;
  for (char c : name)
    if (!letter(c) && !(c >= '0' && c <= '9') && c != '_') return false;
  return true;
}

}  // namespace eomlab
