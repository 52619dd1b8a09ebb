# Thin wrapper for the two set-up commands of the README. Everything real lives in CMake.
BUILD ?= build
JOBS ?= 2

.PHONY: all deps build test demo clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# Runs the test suite (valgrind's memcheck run included: test_valgrind_sh), then every libFuzzer harness for
# FUZZ_SECONDS in $(FUZZ_BUILD) (tests/fuzz/run.sh: clang, a fixed seed, fails on a crash in sdprune's code),
# then the same suite built with AddressSanitizer + UndefinedBehaviorSanitizer in $(ASAN_BUILD) (tests/asan.sh:
# MPI tests and fuzz replays included; the slurm label, which starts its own daemons, the toyworld label (3,600
# images of a trained model through the same code paths the other tests cover) and the valgrind label run only
# in the first pass; test_synth writes and runs the full-size SD 1.5/2.1 files, 4.7 GB and the longest test, only
# in the first pass too: SDPRUNE_SYNTH_QUICK=1). ctest prints the counts on its last line.
ASAN_BUILD ?= $(BUILD)-asan
FUZZ_BUILD ?= $(BUILD)-fuzz
FUZZ_SECONDS ?= 4
test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@echo "== every fuzz harness for $(FUZZ_SECONDS) s ($(FUZZ_BUILD)) =="
	@if command -v clang >/dev/null; then \
	  FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_JOBS=$(JOBS) FUZZ_ARGS=-seed=1 bash tests/fuzz/run.sh $(FUZZ_SECONDS); \
	elif [ "$${CI:-}" = true ]; then echo "FAIL: CI=true and clang is not installed (scripts/deps.sh)"; exit 1; \
	else echo "SKIP: clang is not installed (scripts/deps.sh installs it as root)"; fi
	@echo "== the suite again under ASan + UBSan ($(ASAN_BUILD)) =="
	@SDPRUNE_SYNTH_QUICK=1 ASAN_BUILD=$(ASAN_BUILD) ASAN_JOBS=$(JOBS) bash tests/asan.sh -LE "slurm|toyworld|valgrind"

# The main job, jobs/demo.yaml, on the trained toy world of jobs/toyworld/ (jobs/demo.sh: MPI, 2 ranks).
demo: build
	@bash jobs/demo.sh $(BUILD)

clean:
	rm -rf $(BUILD) out
