// fluxrelay's entry point.
#include "app/commands.hpp"

int main(int argc, char** argv) { return fluxrelay::runCommandLine(argc, argv); }
