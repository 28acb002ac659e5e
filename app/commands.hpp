// The command line (SPEC §1): subcommands, their options and help.
#pragma once

namespace fluxrelay {

int runCommandLine(int argc, char** argv);

}  // namespace fluxrelay
