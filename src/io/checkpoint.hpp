// Checkpoint files of a run (<output>/checkpoints/<run_id>.h5): a DriverCheckpoint (the method's state
// by name under /method, each flow under /flow<i>), written
// collectively by the run's group with each rank's slices as hyperslabs. A checkpoint is complete or
// absent: it is written to a temporary name and renamed into place by group rank 0 after every rank
// has closed it, so a crash while writing leaves the previous checkpoint usable. Its root attribute
// `checksum` covers every value a resume restores; `run_id`, `config` and `inputs` say where it comes from.
#pragma once
#include <optional>
#include <string>

#include "dist/comm.hpp"
#include "flow/driver.hpp"

namespace eomlab::io {

// Where a checkpoint comes from: its run, the config of the invocation that wrote it, and the fingerprints
// of the inputs it was computed from (data, model.init), as one text.
struct CheckpointOrigin {
  std::string run_id, config, inputs;
};

void write_checkpoint(const std::string& path, const dist::Comm& group, const SliceExchange& slices,
                      const DriverCheckpoint& checkpoint, const CheckpointOrigin& origin);

// What a checkpoint of a run must agree with.
struct CheckpointExpectation {
  std::size_t flows = 0;
  long steps = 0, record_every = 1;
  std::string method_state;  // state_signature() of the run's method
  std::string run_id;        // the run's: a checkpoint of another run (a file moved by hand) is refused
  std::string inputs;        // the run's: one of other data (another study's, or edited since) is refused
  std::string older_inputs;  // the same inputs as an older eomlab wrote them ("": none), accepted too
};

// A checkpoint as read back: the run's state and the config it was written with ("" from an older
// eomlab), or what is wrong with the file (then `checkpoint` is empty).
struct CheckpointRead {
  std::optional<DriverCheckpoint> checkpoint;
  std::string config;
  std::string problem;
};

// Reads this rank's part of a checkpoint and verifies it: every value it restores against the checksum
// written with it (so a flipped bit or an edited value is found), the scalars against `expected` (records
// = the records a run has made before `step`). A file that cannot be read is a problem too. Collective:
// every rank of the group gets the same verdict. Nothing and no problem when the file does not exist.
CheckpointRead read_checkpoint(const std::string& path, const dist::Comm& group, const SliceExchange& slices,
                               const CheckpointExpectation& expected);

}  // namespace eomlab::io
