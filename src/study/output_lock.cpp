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
#include <set>
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

// The run ids a lock file lists after its holder line (empty for a lock of an eomlab from before they
// were listed, or one whose holder has not written them yet).
std::set<std::string> listed_runs(const fs::path& path) {
  std::ifstream in(path);
  std::set<std::string> ids;
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line))
    if (!line.empty()) ids.insert(line);
  return ids;
}

// The first lock file in `output` of a shard j/n for which wanted(path, j, n) holds, other than `own`,
// that a live invocation holds (it keeps its exclusive lock, so a shared lock cannot be had); empty if none.
template <class Wanted>
fs::path held_lock(const std::string& output, Wanted wanted, const std::string& own) {
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(output, ec)) {
    const std::string name = entry.path().filename().string();
    int j = -1, n = 0, used = 0;
    if (name == own || std::sscanf(name.c_str(), ".eomlab-lock.%d-of-%d%n", &j, &n, &used) != 2 ||
        used != static_cast<int>(name.size()) || n < 1 || j < 0 || j >= n || !wanted(entry.path(), j, n))
      continue;
    const int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    ::close(fd);
    if (held) return entry.path();
  }
  return {};
}

// Refuses (InputError naming `output` and the holder) when a live invocation that shares a run with `mine`
// holds its lock, other than the lock file `own`. The holder's runs are those its lock lists: under a grid
// grown since it started, its shard j/n holds other runs than j/n of this grid (an adversarial review: an
// old array's shard and a grown one's computed the same run at once, and a stop lost it). A lock without
// the list is taken as shard j/n of this grid.
void refuse_sharing(const std::string& output, const std::vector<RunSpec>& mine, const std::string& own) {
  const fs::path held = held_lock(output, [&](const fs::path& path, int j, int n) {
    const std::set<std::string> theirs = listed_runs(path);
    return std::any_of(mine.begin(), mine.end(), [&](const RunSpec& r) {
      return theirs.empty() ? in_shard(r.index, j, n) : theirs.count(r.run_id) > 0;
    });
  }, own);
  if (!held.empty()) refuse(output, held);
}

}  // namespace

void refuse_output_in_use(const std::string& output, const std::vector<RunSpec>& mine) { refuse_sharing(output, mine, ""); }

std::string lock_holder(const std::string& output) {
  const fs::path held = held_lock(output, [](const fs::path&, int, int) { return true; }, "");
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
  // Who holds it, then its runs, written before the others are read: of two invocations starting at once,
  // the later reader sees the other's runs.
  std::string text = holder + "\n";
  for (const RunSpec& r : mine) text += r.run_id + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    const int err = errno;
    throw InputError("study.output: cannot write '" + mine_path.string() + "': " + std::strerror(err));
  }
  refuse_sharing(output, mine, mine_path.filename().string());  // other invocations' locks sharing a run
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
