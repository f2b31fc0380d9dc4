#include "core/memory.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <vector>
#include <sstream>
#include <string>

namespace eomlab {

// VmHWM, the peak of this program's own memory: getrusage's ru_maxrss also keeps the peak of the process
// before its exec (Linux folds the old memory's high-water mark into it), so a rank started from a large
// Python process reported that process's size (400 MiB for a study of 89).
std::int64_t peak_resident_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) {
      std::istringstream in(line.substr(6));
      std::int64_t kib = 0;
      if (in >> kib) return kib * 1024;
    }
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<std::int64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

void restart_peak_resident() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";  // 5: reset the peak resident set size (VmHWM) to the current one
}

namespace {

// The first number in `path`, or -1 ("max", missing).
std::int64_t read_number(const std::string& path) {
  std::ifstream in(path);
  std::int64_t value = -1;
  return in >> value ? value : -1;
}

std::int64_t mem_available() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string key;
    std::int64_t kib = 0;
    if (fields >> key >> kib && key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

}  // namespace

namespace {

// This process's memory cgroups (v2: the "0::" line of `proc_self_cgroup`; v1: the "memory"
// controller's line): the directory of each under `sys_fs_cgroup`, the names of its limit, usage and
// statistics files there, and the statistic of its reclaimable page cache.
struct Cgroup {
  std::string dir, limit, usage, stat, inactive_file;
};

std::vector<Cgroup> memory_cgroups(const std::string& proc_self_cgroup, const std::string& sys_fs_cgroup) {
  std::vector<Cgroup> found;
  std::ifstream in(proc_self_cgroup);
  std::string line;
  while (std::getline(in, line)) {
    const auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (controllers.empty())
      found.push_back({sys_fs_cgroup + path, "memory.max", "memory.current", "memory.stat", "inactive_file"});
    else if (("," + controllers + ",").find(",memory,") != std::string::npos)
      found.push_back({sys_fs_cgroup + "/memory" + path, "memory.limit_in_bytes", "memory.usage_in_bytes",
                       "memory.stat", "total_inactive_file"});
  }
  return found;
}

// The value of `key` in a memory.stat file, or 0.
std::int64_t stat_value(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string name;
  std::int64_t value = 0;
  while (in >> name >> value)
    if (name == key) return value;
  return 0;
}

}  // namespace

std::int64_t available_memory_bytes_in(const std::string& proc_self_cgroup, const std::string& sys_fs_cgroup,
                                       std::int64_t mem_available, std::string* source) {
  std::int64_t available = mem_available;
  if (source) *source = "MemAvailable in /proc/meminfo";
  for (const Cgroup& g : memory_cgroups(proc_self_cgroup, sys_fs_cgroup)) {
    // The limit may be set on any ancestor (a batch system limits the job, not each step's or task's
    // cgroup): each level up to the hierarchy's root counts. Inactive page cache is reclaimable, not used.
    for (std::string dir = g.dir;;) {
      const std::int64_t limit = read_number(dir + "/" + g.limit), usage = read_number(dir + "/" + g.usage);
      // "max" (v2) or a huge number (v1) means no limit: only a limit below MemAvailable matters.
      if (limit > 0 && usage >= 0) {
        const std::int64_t cache = stat_value(dir + "/" + g.stat, g.inactive_file);
        const std::int64_t left = limit - std::max<std::int64_t>(usage - cache, 0);
        if (available == 0 || left < available) {
          available = std::max<std::int64_t>(left, 0);
          if (source) *source = "the limit of cgroup " + dir;
        }
      }
      const auto slash = dir.find_last_of('/');
      if (slash == std::string::npos || dir.size() <= sys_fs_cgroup.size() + 1 || slash < sys_fs_cgroup.size()) break;
      dir.erase(slash);
    }
  }
  return available;
}

std::int64_t address_space_left_bytes() {
  rlimit limit{};
  if (getrlimit(RLIMIT_AS, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return 0;
  std::ifstream statm("/proc/self/statm");
  std::int64_t pages = 0;
  statm >> pages;
  const std::int64_t left = static_cast<std::int64_t>(limit.rlim_cur) - pages * sysconf(_SC_PAGESIZE);
  return std::max<std::int64_t>(left, 1);
}

std::int64_t available_memory_bytes(std::string* source) {
  return available_memory_bytes_in("/proc/self/cgroup", "/sys/fs/cgroup", mem_available(), source);
}

std::int64_t memory_left_bytes() {
  const std::int64_t node = available_memory_bytes(), address_space = address_space_left_bytes();
  if (node > 0 && address_space > 0) return std::min(node, address_space);
  return std::max(node, address_space);
}

}  // namespace eomlab
