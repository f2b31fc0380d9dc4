// The eomlab program (DESIGN.md §3.1) as a function: MPI set up, stop handlers, the command line,
// and the exit codes (0, 2 on bad input, 75 when stopped, 1 otherwise). A program that registers its
// own methods, flows or observables first (flow/registry.hpp) and then calls it is eomlab with them.
#pragma once

namespace eomlab {
int run_eomlab(int argc, char** argv);
}
