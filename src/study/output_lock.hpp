// Keeps two invocations from computing the same runs in one output directory at once (a job resubmitted
// while its requeued copy still runs, a manual --resume beside a job). Each invocation holds an
// exclusive advisory lock (flock) on <output>/.eomlab-lock.<shard>-of-<shards> for as long as it lives;
// the kernel releases it when the process ends, even by SIGKILL. The file names the holder, then its
// runs' ids. Invocations that share a run refuse each other (by those ids, so also across a grid grown
// in between); shards of one job array (disjoint runs) do not. On a file system without flock
// (e.g. Lustre mounted without it) the study runs unlocked after a warning on stderr.
#pragma once
#include <string>
#include <vector>

#include "core/config.hpp"

namespace eomlab {

// Refuses as taking the lock of an invocation of `mine` would, taking nothing (for --dry-run).
void refuse_output_in_use(const std::string& output, const std::vector<RunSpec>& mine);

// Who holds a lock on `output` (the text of the first lock file found held), or "" when no invocation does.
std::string lock_holder(const std::string& output);

class OutputLock {
 public:
  OutputLock() = default;
  // Takes the lock of shard i/n, whose runs are `mine`, writing holder (who and since when) into it.
  // Throws InputError naming the directory and the holder if an invocation sharing a run holds one.
  OutputLock(const std::string& output, int shard, int shards, const std::vector<RunSpec>& mine,
             const std::string& holder);
  OutputLock(OutputLock&& other) noexcept;
  OutputLock& operator=(OutputLock&& other) noexcept;
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;
  ~OutputLock();

 private:
  int fd_ = -1;
};

}  // namespace eomlab
