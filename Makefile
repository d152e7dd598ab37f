# keel: the two commands are `make demo` and `make test`. Both run `make setup` first and are
# idempotent.
SHELL := /bin/bash
CARGO ?= cargo
ARCH ?= $(shell uname -m | sed 's/arm64/aarch64/')
OUT ?= out
TEST_THREADS ?= 2
# Binaries that name no path of this machine (docs/architecture.md, "Reproducing a published
# image"): every build make runs remaps the checkout and cargo's home to fixed names.
CARGO_HOME ?= $(HOME)/.cargo
export RUSTFLAGS := $(RUSTFLAGS) --remap-path-prefix=$(CURDIR)=/keel --remap-path-prefix=$(abspath $(CARGO_HOME))=/cargo

.PHONY: all setup build init init-bins test-bins demo test check bench lint fmt clean fuzz fuzz-build fuzz-seeds \
	fuzz-corpus

all: build

## setup: install what is missing (Debian packages, Rust targets, pinned kernels and stubs, the
## example OCI image)
setup:
	@bash .ci/setup

## build: target/release/keel and keel-init for both arches
build: init
	$(CARGO) build --release -p keel-builder -p keel-tests -p keel-runtime-cli

## init: what images carry, always from the release profile: keel-init (and the test inits and
## probe) for both arches, and the probe's OCI image
init: setup init-bins
	tests/fixtures/make-probe-oci target target/probe-oci

# The same commands build keel-init wherever it is checked for reproducibility
# (tests/tests/reproducible.rs): the packages built together settle the features of their
# dependencies.
init-bins:
	$(CARGO) build --release -p keel-init -p trivial-init -p keel-probe --target x86_64-unknown-linux-musl
	$(CARGO) build --release -p keel-init -p trivial-init -p keel-probe --target aarch64-unknown-linux-musl

# The tests and the keel they run are built with the `ci` profile (Cargo.toml says why).
TEST_PROFILE ?= ci
test-bins: init
	$(CARGO) build --profile $(TEST_PROFILE) -p keel-builder

## demo: build configs/hello.toml for this machine's arch and boot it under QEMU (TCG)
demo: build
	target/release/keel build configs/hello.toml --arch $(ARCH) -o $(OUT)
	target/release/keel run $(OUT)/hello-$(ARCH).img --timeout 600s

## test: every test, the QEMU boots on both arches included
test: test-bins
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) test --profile $(TEST_PROFILE) --workspace --exclude keel-init -- --test-threads=$(TEST_THREADS)
	$(CARGO) test --profile $(TEST_PROFILE) -p keel-init
	$(MAKE) fuzz-corpus

# The test files of keel-tests that boot VMs; `make check` leaves them (and keel-qemu's own boots)
# to `make test`.
BOOT_TESTS := api cases colluders corruption filter_only grow isolation network real_images restart secure_boot shutdown steady supervision tenants volumes web
QUICK_TESTS := $(filter-out $(BOOT_TESTS),$(basename $(notdir $(wildcard tests/tests/*.rs))))

## check: the quick loop: lint, unit tests, host runtime tests and artifact tests; no VM boots
check: test-bins
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) test --profile $(TEST_PROFILE) --workspace --exclude keel-init --exclude keel-tests --exclude keel-qemu -- --test-threads=$(TEST_THREADS)
	$(CARGO) test --profile $(TEST_PROFILE) -p keel-qemu --lib
	$(CARGO) test --profile $(TEST_PROFILE) -p keel-tests --lib --bins $(addprefix --test ,$(QUICK_TESTS)) -- --test-threads=$(TEST_THREADS)
	$(CARGO) test --profile $(TEST_PROFILE) -p keel-init
	@echo "check: passed; the VM boots ($(BOOT_TESTS), keel-qemu's vm) run in make test"

## fuzz: each fuzz target (fuzz/fuzz_targets) for FUZZ_SECONDS, one after another, then its
## executions and whether it was clean; corpora grow in fuzz/corpus/TARGET, crashes land in
## fuzz/artifacts/TARGET (docs/architecture.md, "Fuzzing")
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= config oci layer docker ar deb modinfo uki gpt plan filter seccomp dhcp http dpkg cert
# libFuzzer's coverage instrumentation, as cargo fuzz sets it, with stable flags only (no
# sanitizer, so no -Z flag and no nightly). Built for the host triple named explicitly, so build
# scripts and proc macros are not instrumented. The remap above stays in RUSTFLAGS.
FUZZ_HOST := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
FUZZ_BIN := fuzz/target/$(FUZZ_HOST)/release
FUZZ_RUSTFLAGS := -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing

fuzz: setup fuzz-seeds
	fuzz/run $(FUZZ_BIN) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

## fuzz-corpus: each fuzz target over its corpus once (seeds and regressions); part of make test
fuzz-corpus: fuzz-seeds
	fuzz/run $(FUZZ_BIN) 0 $(FUZZ_TARGETS)

fuzz-build:
	RUSTFLAGS="$$RUSTFLAGS $(FUZZ_RUSTFLAGS)" $(CARGO) build --release --locked \
	  --manifest-path fuzz/Cargo.toml --target $(FUZZ_HOST)

# Seeds made from the project's own inputs (fuzz/make-seeds), added to what the corpora hold.
fuzz-seeds: fuzz-build
	python3 fuzz/make-seeds . fuzz/corpus

## bench: boot timeline against a trivial init, part sizes, build time
bench: build
	target/release/keel-bench

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) fmt --all -- --check

fmt:
	$(CARGO) fmt --all

clean:
	rm -rf target $(OUT)
