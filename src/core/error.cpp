#include "core/error.hpp"

namespace eomlab {

void throw_input_error(const std::string& where, const std::string& expected, const std::string& got) {
  throw InputError(where + ": expected " + expected + ", got " + got);
}

}  // namespace eomlab
