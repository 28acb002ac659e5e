# Thin wrapper over the build: the README's commands. CMake and ctest do the real work.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= 2

.PHONY: all deps build test run clean
# deps must finish before build starts, even under make -j.
.NOTPARALLEL:

all: build

deps:
	scripts/install-deps.sh

build:
	cmake -G Ninja -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)
	ninja -C $(BUILD_DIR) -j$(JOBS)

test: deps build
	ctest --test-dir $(BUILD_DIR) --output-on-failure

run: deps build
	scripts/run-local.sh $(BUILD_DIR)/fluxrelay

clean:
	rm -rf $(BUILD_DIR) fluxrelay-data
