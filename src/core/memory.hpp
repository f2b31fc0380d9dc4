// The process's peak resident memory (high-water mark since it started), for the run files' provenance
// and the memory benchmark: what a rank of a run needs from its node.
#pragma once
#include <cstdint>

namespace eomlab {

// Bytes; 0 where the system does not tell.
std::int64_t peak_resident_bytes();

}  // namespace eomlab
