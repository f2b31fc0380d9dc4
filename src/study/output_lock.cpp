#include "study/output_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <utility>

#include "core/error.hpp"

namespace fs = std::filesystem;

namespace eomlab {
namespace {

std::string lock_name(int shard, int shards) {
  return ".eomlab-lock." + std::to_string(shard) + "-of-" + std::to_string(shards);
}

// Shard i/n runs the grid's runs k with k % n == i.
bool shards_share_a_run(int i, int n, int j, int m, std::size_t n_runs) {
  for (std::size_t k = 0; k < n_runs; ++k)
    if (static_cast<int>(k % static_cast<std::size_t>(n)) == i && static_cast<int>(k % static_cast<std::size_t>(m)) == j)
      return true;
  return false;
}

std::string holder_of(const fs::path& path) {
  std::ifstream in(path);
  std::string text;
  std::getline(in, text);
  return text.empty() ? "another eomlab" : text;
}

[[noreturn]] void refuse(const std::string& output, const fs::path& lock) {
  throw InputError("study.output: '" + output + "' is in use by " + holder_of(lock) +
                   "; wait for it to end or stop it");
}

// flock failed for a reason other than another holder: the file system does not lock.
bool unsupported(int err) { return err != EWOULDBLOCK && err != EINTR; }

void warn_unlocked(const fs::path& path, int err) {
  std::cerr << "eomlab: warning: cannot lock '" << path.string() << "' (" << std::strerror(err)
            << "); a second eomlab on this output directory would not be detected" << std::endl;
}

}  // namespace

OutputLock::OutputLock(const std::string& output, int shard, int shards, std::size_t n_runs, const std::string& holder) {
  const fs::path mine = fs::path(output) / lock_name(shard, shards);
  fd_ = ::open(mine.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw InputError("study.output: cannot create '" + mine.string() + "': " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (!unsupported(err)) {
      ::close(fd_);
      fd_ = -1;
      refuse(output, mine);
    }
    warn_unlocked(mine, err);
    ::close(fd_);
    fd_ = -1;
    return;
  }
  // Other shards' locks: a live holder keeps its lock, so a shared lock cannot be had.
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(output, ec)) {
    const std::string name = entry.path().filename().string();
    int j = -1, n = 0, used = 0;
    if (name == mine.filename().string() ||
        std::sscanf(name.c_str(), ".eomlab-lock.%d-of-%d%n", &j, &n, &used) != 2 ||
        used != static_cast<int>(name.size()) || n < 1 || j < 0 || j >= n ||
        !shards_share_a_run(shard, shards, j, n, n_runs))
      continue;
    const int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    ::close(fd);
    if (held) {
      ::close(fd_);
      fd_ = -1;
      refuse(output, entry.path());
    }
  }
  const std::string text = holder + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    throw Error("cannot write '" + mine.string() + "': " + std::strerror(err));
  }
}

OutputLock::OutputLock(OutputLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

OutputLock& OutputLock::operator=(OutputLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

OutputLock::~OutputLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace eomlab
