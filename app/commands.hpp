// The command line: subcommands, their options and help.
#pragma once

namespace fluxrelay {

int runCommandLine(int argc, char** argv);

}  // namespace fluxrelay
