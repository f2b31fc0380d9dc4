// The process's peak resident memory (high-water mark since it started), for the run files' provenance
// and the memory benchmark: what a rank of a run needs from its node.
#pragma once
#include <cstdint>
#include <string>

namespace eomlab {

// Bytes; 0 where the system does not tell.
std::int64_t peak_resident_bytes();

// Starts the high-water mark again from the memory resident now (Linux: /proc/self/clear_refs), so that a
// run's peak is its own, not that of a run before it or of the Python process eomlab runs in (a notebook
// that had freed 400 MB recorded 430 MiB for a study of 32). Nothing where the system does not allow it.
void restart_peak_resident();

// Memory this process's node can still give (bytes): MemAvailable of /proc/meminfo, lowered to what the
// process's cgroup (v2 memory.max, v1 memory.limit_in_bytes: a batch job's share) has left; `source` says
// which. 0 where the system does not tell.
std::int64_t available_memory_bytes(std::string* source = nullptr);

// Address space this process may still map under its limit (RLIMIT_AS, `ulimit -v`): the limit less what
// it maps now (bytes); 0 where there is no limit. Beyond it allocations fail, and OpenBLAS may spin on them.
std::int64_t address_space_left_bytes();

// What this process can still allocate before either limit above, the node's (or its cgroup's) or its
// address space's: the smaller of available_memory_bytes() and address_space_left_bytes(); 0 where neither
// is known. Input files are checked against it before their data is allocated.
std::int64_t memory_left_bytes();

// The same from the given files: /proc/self/cgroup, the cgroup file system's mount point, MemAvailable.
// A limit on any ancestor of the process's cgroup counts; inactive page cache counts as available.
std::int64_t available_memory_bytes_in(const std::string& proc_self_cgroup, const std::string& sys_fs_cgroup,
                                       std::int64_t mem_available, std::string* source = nullptr);

}  // namespace eomlab
