#include "core/files.hpp"

#include <filesystem>

#include "core/error.hpp"

namespace fs = std::filesystem;

namespace eomlab {
namespace {

const char* kind_of(fs::file_type type) {
  switch (type) {
    case fs::file_type::directory: return "a directory";
    case fs::file_type::fifo: return "a FIFO";
    case fs::file_type::socket: return "a socket";
    case fs::file_type::block:
    case fs::file_type::character: return "a device";
    default: return "not a regular file";
  }
}

}  // namespace

void require_regular_file(const std::string& key, const std::string& path) {
  std::error_code ec;
  const fs::file_type type = fs::status(path, ec).type();
  if (type == fs::file_type::regular) return;
  if (type == fs::file_type::not_found || type == fs::file_type::none)
    throw InputError(key + ": cannot open file '" + path + "'");
  throw_input_error(key, "a regular file", std::string(kind_of(type)) + " '" + path + "'");
}

}  // namespace eomlab
