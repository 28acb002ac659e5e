// Invariant checks for the fuzz targets: unlike assert, never compiled out, and they say what broke.
#pragma once

#include <cstdio>
#include <cstdlib>

// A failed check aborts, which libFuzzer reports as a crash and saves the input that caused it.
#define FUZZ_CHECK(condition)                                                                      \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #condition); \
            std::abort();                                                                          \
        }                                                                                          \
    } while (false)
