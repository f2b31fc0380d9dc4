// Exceptions of eomlab. Every exception derives from Error.
// InputError is a user's mistake (config, command line, input file): the program exits with code 2
// and prints the message, which names the key or file. Any other Error exits with code 1.
// Numerical outcomes (divergence, NaN) are never exceptions: they are recorded as results.
#pragma once
#include <stdexcept>
#include <string>

namespace eomlab {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class InputError : public Error {
 public:
  using Error::Error;
};

// "<where>: expected <expected>, got <got>"
[[noreturn]] void throw_input_error(const std::string& where, const std::string& expected,
                                    const std::string& got);

}  // namespace eomlab
