// Checkpoint files of a run (<output>/checkpoints/<run_id>.h5): a DriverCheckpoint, written
// collectively by the run's group with each rank's slices as hyperslabs. A checkpoint is complete or
// absent: it is written to a temporary name and renamed into place by group rank 0 after every rank
// has closed it, so a crash while writing leaves the previous checkpoint usable.
#pragma once
#include <optional>
#include <string>

#include "dist/comm.hpp"
#include "flow/driver.hpp"

namespace eomlab::io {

void write_checkpoint(const std::string& path, const dist::Comm& group, const SliceExchange& slices,
                      const DriverCheckpoint& checkpoint);

// Reads this rank's part of a checkpoint; nothing when the file does not exist. Collective.
std::optional<DriverCheckpoint> read_checkpoint(const std::string& path, const dist::Comm& group,
                                                const SliceExchange& slices);

}  // namespace eomlab::io
