// The MPI handle inside a Comm, for the one other module that must pass it on (io: the MPI-IO driver
// of parallel HDF5). Includes mpi.h: include it only from .cpp files.
#pragma once
#include <mpi.h>

#include "dist/comm.hpp"

namespace eomlab::dist {

MPI_Comm native_handle(const Comm& comm);

}  // namespace eomlab::dist
