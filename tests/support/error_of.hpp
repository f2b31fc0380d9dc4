// The message of the eomlab::Error a call throws, or "no error": for tests of refusals' exact wording.
#pragma once
#include <string>

#include "core/error.hpp"

namespace eomlab::test {

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace eomlab::test
