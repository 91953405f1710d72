# sessionrepl: `make demo` runs the demo, `make test` runs every test.
CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)
RELEASE_BIN := target/release/sessionrepl

.PHONY: all build release demo test test-rust bench deps fmt lint clean fuzz-smoke

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
test: deps test-rust ffi-header-check ffi-test c-examples-test java-test fuzz-smoke
	@echo "make test: all suites passed"

test-rust:
	$(CARGO) build --lib    # the cdylib that tests/ffi_symbols.rs inspects
	$(CARGO) test --workspace --lib --bins --tests --examples -- --test-threads=2
	$(CARGO) test --workspace --benches
	$(CARGO) test --workspace --doc

## The fuzz targets (frame decoder, secure handshake, peer messages): built, then each run briefly (FUZZ_SECS).
## cargo-fuzz wants nightly for its sanitizer flags; with `-s none` only
## unstable-option parsing remains, which RUSTC_BOOTSTRAP=1 allows on stable.
FUZZ_SECS ?= 15
fuzz-smoke:
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build -s none frame_decoder
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build -s none secure_handshake
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build -s none peer_messages
	@mkdir -p build
	@cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none frame_decoder -- \
	  -max_total_time=$(FUZZ_SECS) -rss_limit_mb=2048 -print_final_stats=1 \
	  > ../build/fuzz.log 2>&1; rc=$$?; tail -n 8 ../build/fuzz.log; exit $$rc
	@cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none secure_handshake -- \
	  -max_total_time=$(FUZZ_SECS) -rss_limit_mb=2048 -print_final_stats=1 \
	  > ../build/fuzz-secure.log 2>&1; rc=$$?; tail -n 8 ../build/fuzz-secure.log; exit $$rc
	@cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none peer_messages -- \
	  -max_total_time=$(FUZZ_SECS) -rss_limit_mb=2048 -print_final_stats=1 \
	  > ../build/fuzz-peer.log 2>&1; rc=$$?; tail -n 8 ../build/fuzz-peer.log; exit $$rc

bench: release
	$(RELEASE_BIN) bench $(BENCH_ARGS)

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy -p sessionrepl-jni --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps -p sessionrepl

clean:
	$(CARGO) clean

-include mk/*.mk
