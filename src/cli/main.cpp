// eomlab: runs GD beside gradient flow and the EoM on a neural network and writes HDF5 results.
#include "cli/app.hpp"

int main(int argc, char** argv) { return eomlab::run_eomlab(argc, argv); }
