#include "study/output_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <utility>

#include "core/error.hpp"
#include "study/study.hpp"

namespace fs = std::filesystem;

namespace eomlab {
namespace {

std::string lock_name(int shard, int shards) {
  return ".eomlab-lock." + std::to_string(shard) + "-of-" + std::to_string(shards);
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

void warn_unlocked(const fs::path& path, int err) {
  std::cerr << "eomlab: warning: cannot lock '" << path.string() << "' (" << std::strerror(err)
            << "); a second eomlab on this output directory would not be detected" << std::endl;
}

// The first lock file in `output` of a shard j/n for which wanted(j, n) holds, other than `own`, that
// a live invocation holds (it keeps its exclusive lock, so a shared lock cannot be had); empty if none.
template <class Wanted>
fs::path held_lock(const std::string& output, Wanted wanted, const std::string& own) {
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(output, ec)) {
    const std::string name = entry.path().filename().string();
    int j = -1, n = 0, used = 0;
    if (name == own || std::sscanf(name.c_str(), ".eomlab-lock.%d-of-%d%n", &j, &n, &used) != 2 ||
        used != static_cast<int>(name.size()) || n < 1 || j < 0 || j >= n || !wanted(j, n))
      continue;
    const int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    ::close(fd);
    if (held) return entry.path();
  }
  return {};
}

// Refuses (InputError naming `output` and the holder) when a live invocation whose shard shares a run with
// `mine` holds its lock, other than the lock file `own`.
void refuse_sharing(const std::string& output, const std::vector<RunSpec>& mine, const std::string& own) {
  const fs::path held = held_lock(output, [&](int j, int n) {
    return std::any_of(mine.begin(), mine.end(), [&](const RunSpec& r) { return in_shard(r.index, j, n); });
  }, own);
  if (!held.empty()) refuse(output, held);
}

}  // namespace

void refuse_output_in_use(const std::string& output, const std::vector<RunSpec>& mine) { refuse_sharing(output, mine, ""); }

std::string lock_holder(const std::string& output) {
  const fs::path held = held_lock(output, [](int, int) { return true; }, "");
  return held.empty() ? "" : holder_of(held);
}

// Delegating to the default constructor makes the object complete at once: a throw below closes fd_.
OutputLock::OutputLock(const std::string& output, int shard, int shards, const std::vector<RunSpec>& mine,
                       const std::string& holder)
    : OutputLock() {
  const fs::path mine_path = fs::path(output) / lock_name(shard, shards);
  fd_ = ::open(mine_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw InputError("study.output: cannot create '" + mine_path.string() + "': " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err == EWOULDBLOCK || err == EINTR) refuse(output, mine_path);
    warn_unlocked(mine_path, err);  // any other failure: the file system does not lock
    *this = OutputLock();
    return;
  }
  refuse_sharing(output, mine, mine_path.filename().string());  // other shards' locks sharing a run
  const std::string text = holder + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    const int err = errno;
    throw InputError("study.output: cannot write '" + mine_path.string() + "': " + std::strerror(err));
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
