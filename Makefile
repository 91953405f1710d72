# sessionrepl: `make demo` runs the demo, `make test` runs every test.
CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)
RELEASE_BIN := target/release/sessionrepl

.PHONY: all build release demo test test-rust bench deps fmt lint clean

all: build

deps:
	@bash scripts/deps.sh

build:
	$(CARGO) build

release:
	$(CARGO) build --release

demo: release
	@$(RELEASE_BIN) demo

## Every test: Rust (unit, integration, loopback, hostile input, interop,
## namespaces), C (FFI tests under sanitizers and valgrind, examples), Java.
test: deps test-rust ffi-header-check ffi-test c-examples-test
	@echo "make test: all suites passed"

test-rust:
	$(CARGO) build --lib    # the cdylib that tests/ffi_symbols.rs inspects
	$(CARGO) test --lib --bins --tests --examples -- --test-threads=2
	$(CARGO) test --benches
	$(CARGO) test --doc

bench: release
	$(RELEASE_BIN) bench $(BENCH_ARGS)

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean

-include mk/*.mk
