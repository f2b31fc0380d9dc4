// Input files named by the user (--config, data.source = hdf5:PATH, model.init = hdf5:PATH).
#pragma once
#include <string>

namespace eomlab {

// Throws InputError naming `key` and `path` unless `path` is a regular file (or a link to one). Called
// before a file is opened: a directory would read as empty, and opening a FIFO would wait forever.
void require_regular_file(const std::string& key, const std::string& path);

}  // namespace eomlab
