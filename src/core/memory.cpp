#include "core/memory.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <vector>
#include <sstream>

namespace eomlab {

std::int64_t peak_resident_bytes() {
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<std::int64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
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

// This process's memory cgroup directory (v2: the "0::" line of /proc/self/cgroup; v1: the "memory"
// controller's line) and the names of its limit and usage files there.
struct Cgroup {
  std::string dir, limit, usage;
};

std::vector<Cgroup> memory_cgroups() {
  std::vector<Cgroup> found;
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    const auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (controllers.empty())
      found.push_back({"/sys/fs/cgroup" + path, "memory.max", "memory.current"});
    else if (("," + controllers + ",").find(",memory,") != std::string::npos)
      found.push_back({"/sys/fs/cgroup/memory" + path, "memory.limit_in_bytes", "memory.usage_in_bytes"});
  }
  return found;
}

std::int64_t available_memory_bytes(std::string* source) {
  std::int64_t available = mem_available();
  if (source) *source = "MemAvailable in /proc/meminfo";
  for (const Cgroup& g : memory_cgroups()) {
    const std::int64_t limit = read_number(g.dir + "/" + g.limit), usage = read_number(g.dir + "/" + g.usage);
    // "max" (v2) or a huge number (v1) means no limit: only a limit below MemAvailable matters.
    if (limit > 0 && usage >= 0 && (available == 0 || limit - usage < available)) {
      available = std::max<std::int64_t>(limit - usage, 0);
      if (source) *source = "the limit of cgroup " + g.dir;
    }
  }
  return available;
}

}  // namespace eomlab
