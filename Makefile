# ipsan: the two entry points a new user needs (see README.md), plus the build steps they use.
JOBS ?= $(shell nproc)
CMAKE_PRESET_FLAGS = -G Ninja -DIPSAN_STRICT=ON

.PHONY: demo test test-summary setup build-release build-debug build-asan build-fuzz test-debug test-asan fuzz clean

demo: setup build-release
	scripts/demo.sh build/release 256M

test: setup build-debug test-debug build-asan test-asan test-summary

setup:
	scripts/setup.sh

build-release:
	cmake --preset release >/dev/null
	cmake --build --preset release -j $(JOBS) --target ipsan

build-debug:
	cmake --preset debug >/dev/null
	cmake --build --preset debug -j $(JOBS)

build-asan:
	cmake --preset asan >/dev/null
	cmake --build --preset asan -j $(JOBS) --target unit_integration_tests

build-fuzz:
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz -j $(JOBS)

# Every test of the debug build: unit, integration, conformance, fuzz (corpus replay) and vm.
test-debug:
	cd build/debug && ctest --output-on-failure -j 2 --timeout 900 --output-junit junit.xml

# The sanitizer build runs the unit and integration tests.
test-asan:
	cd build/asan && ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/test/lsan.supp:print_suppressions=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j 2 -L 'unit|integration' --timeout 900 --output-junit junit.xml

# Every test that did not pass, from both runs; fails under CI=true if any test was skipped.
test-summary:
	scripts/test-summary.sh build/debug/junit.xml build/asan/junit.xml

# Short libFuzzer runs of every target (clang), seeded with the committed corpora.
fuzz: setup build-fuzz
	for f in build/fuzz/fuzz/*_fuzzer; do n=$$(basename $$f _fuzzer); \
	  $$f -max_total_time=30 -print_final_stats=1 fuzz/corpus/$$n || exit 1; done

clean:
	rm -rf build
