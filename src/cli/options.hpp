// The command line and the study config file (DESIGN.md §3.1-3.2): parsing and validation.
// Only src/cli includes Boost.Program_options. Every mistake is an InputError whose message names
// the key or file; parsing is deterministic so every MPI rank reaches the same verdict.
#pragma once
#include <string>
#include <vector>

#include "core/config.hpp"

namespace eomlab::cli {

enum class Action { run, help, version, print_config, dry_run, catalog };

struct Command {
  Action action = Action::run;
  StudyConfig config;
  bool overwrite = false;
  bool resume = false;
  int shard = 0, shards = 1;  // --shard i/n
  std::string help_text;
};

Command parse_command_line(int argc, const char* const argv[]);

// The config an INI text holds (defaults for the keys it does not give); `where` names the text in
// messages. Throws InputError as the command line would.
StudyConfig parse_config_text(const std::string& ini, const std::string& where);

// The resolved text of the config an INI text holds (a study.ini, also one written by an older eomlab
// in the spelling it was given): equal configs give equal text. A text that is not a valid config is
// returned as it is.
std::string canonical_config_text(const std::string& ini);

// Every value, from a file, the command line or the Python module, before it becomes config text: no control
// characters but tab (a line break would end the value and start keys of its own, a NUL cut the text) and
// no '#' starting a word (it would read as a comment). InputError naming `key` otherwise.
void check_value(const std::string& key, const std::string& value);

}  // namespace eomlab::cli
