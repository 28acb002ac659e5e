# Thin wrapper over the build: the README's commands. CMake and ctest do the real work.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= 2
SANITIZE_BUILD_DIR ?= build-sanitize
FUZZ_BUILD_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60

.PHONY: all deps build test test-sanitize fuzz tidy image run clean
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

# The same suite built with AddressSanitizer and UndefinedBehaviorSanitizer, in a folder of its
# own; any report fails its test (test/CMakeLists.txt). SANITIZE_CTEST_ARGS selects, e.g. -E deploy.
test-sanitize: deps
	cmake -G Ninja -B $(SANITIZE_BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLUXRELAY_SANITIZE=ON
	ninja -C $(SANITIZE_BUILD_DIR) -j$(JOBS)
	ctest --test-dir $(SANITIZE_BUILD_DIR) --output-on-failure $(SANITIZE_CTEST_ARGS)

# libFuzzer targets (fuzz/), built with clang in a folder of their own, each run FUZZ_SECONDS over
# its seeds in fuzz/corpus/; what they discover stays in $(FUZZ_BUILD_DIR).
fuzz:
	scripts/install-deps.sh --fuzz
	cmake -G Ninja -B $(FUZZ_BUILD_DIR) -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLUXRELAY_FUZZ=ON
	ninja -C $(FUZZ_BUILD_DIR) -j$(JOBS) fuzzers
	fuzz/run.sh $(FUZZ_BUILD_DIR) $(FUZZ_SECONDS)

# clang-tidy with the checks .clang-tidy lists, over every source and test the build compiles;
# any finding fails. Uses the build's compile database.
tidy: build
	scripts/install-deps.sh --tidy
	run-clang-tidy -p $(BUILD_DIR) -j$(JOBS) -quiet -extra-arg=-Wno-unknown-warning-option \
	  "$(CURDIR)/(admin|app|config|core|filters|gateway|providers|storage|test|bench|fuzz)/"

# The container image fluxrelay:VERSION from deploy/Dockerfile, with buildah and no registry: the
# Debian base images it names are made locally first (deploy/build-image.sh). Needs root.
# test/integration/image.test.mjs runs it; it is skipped while the image is not built.
image:
	scripts/install-deps.sh --image
	deploy/build-image.sh

run: deps build
	scripts/run-local.sh $(BUILD_DIR)/fluxrelay

clean:
	rm -rf $(BUILD_DIR) $(SANITIZE_BUILD_DIR) $(FUZZ_BUILD_DIR) fluxrelay-data
