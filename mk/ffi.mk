# C library targets of sessionrepl. Included by the top-level Makefile
# (`include mk/ffi.mk`); also usable alone: `make -f mk/ffi.mk ffi-test`.
# Run from the repository root.
#
#   ffi-lib           cargo build --release --lib (libsessionrepl.so and .a)
#   ffi-header        regenerate include/sessionrepl.h with cbindgen
#   ffi-header-check  fail if the checked-in header is stale; compile it as
#                     C99 and C++ with -Wall -Wextra -Werror
#   install           ffi-lib, then into PREFIX=/usr/local (DESTDIR too): the
#                     .so stripped, with its soname links, its debug info in
#                     LIBDIR/.debug/ (found by gdb through .gnu_debuglink),
#                     the .a, the header, sessionrepl.pc, the C docs in
#                     DOCDIR
#   ffi-test          install into build/ffi/stage, build ffi-tests/*.c
#                     against it with pkg-config, run them under ASan+UBSan
#                     (static lib) and valgrind (release .so), check exports
#   c-examples-test   build c-examples/*.c with pkg-config and run them; an
#                     example with a c-examples/<name>.test.sh is run by
#                     that script instead (given the binary's path)

FFI_CARGO      ?= cargo
FFI_CC         ?= cc
FFI_CXX        ?= c++
CBINDGEN       ?= $(shell command -v cbindgen 2>/dev/null || echo $(HOME)/.cargo/bin/cbindgen)
VALGRIND       ?= valgrind
PREFIX         ?= /usr/local
LIBDIR         ?= $(PREFIX)/lib
INCLUDEDIR     ?= $(PREFIX)/include
PKGCONFIGDIR   ?= $(LIBDIR)/pkgconfig
DOCDIR         ?= $(PREFIX)/share/doc/sessionrepl
OBJCOPY        ?= objcopy

FFI_VERSION    := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
FFI_MAJOR      := $(firstword $(subst ., ,$(FFI_VERSION)))
FFI_TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
FFI_REL        := $(FFI_TARGET_DIR)/release
FFI_BUILD      := build/ffi
FFI_STAGE      := $(CURDIR)/$(FFI_BUILD)/stage
FFI_WARN       := -Wall -Wextra -Werror
FFI_PKG        = PKG_CONFIG_PATH=$(FFI_STAGE)/lib/pkgconfig pkg-config
FFI_SAN        := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
FFI_ASAN_ENV   := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 \
                  LSAN_OPTIONS=suppressions=$(CURDIR)/ffi-tests/lsan.supp:print_suppressions=0 \
                  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
FFI_TESTS      := $(basename $(notdir $(wildcard ffi-tests/*.c)))
FFI_EXAMPLES   := $(basename $(notdir $(wildcard c-examples/*.c)))

.PHONY: ffi-lib ffi-header ffi-header-check install ffi-stage ffi-test c-examples-test

ffi-lib:
	$(FFI_CARGO) build --release --lib

ffi-header:
	$(CBINDGEN) --quiet --config cbindgen.toml --output include/sessionrepl.h src/ffi/mod.rs

ffi-header-check:
	@mkdir -p $(FFI_BUILD)
	$(CBINDGEN) --quiet --config cbindgen.toml --output $(FFI_BUILD)/sessionrepl.h src/ffi/mod.rs
	@diff -u include/sessionrepl.h $(FFI_BUILD)/sessionrepl.h \
	  || { echo "include/sessionrepl.h is stale: run 'make ffi-header' and commit it"; exit 1; }
	@# Whole-crate mode too: only src/ffi reaches the header (the other
	@# modules carry `/// cbindgen:ignore`).
	$(CBINDGEN) --quiet --config cbindgen.toml --crate sessionrepl --output $(FFI_BUILD)/sessionrepl-crate.h
	@diff -u include/sessionrepl.h $(FFI_BUILD)/sessionrepl-crate.h \
	  || { echo "cbindgen --crate sessionrepl emits more than src/ffi: a module lost its cbindgen:ignore"; exit 1; }
	printf '#include "sessionrepl.h"\nint main(void) { return sr_version() == 0; }\n' > $(FFI_BUILD)/hdr.c
	cp $(FFI_BUILD)/hdr.c $(FFI_BUILD)/hdr.cpp
	$(FFI_CC) -std=c99 -pedantic $(FFI_WARN) -Iinclude -c $(FFI_BUILD)/hdr.c -o $(FFI_BUILD)/hdr_c.o
	$(FFI_CXX) -std=c++11 -pedantic $(FFI_WARN) -Iinclude -c $(FFI_BUILD)/hdr.cpp -o $(FFI_BUILD)/hdr_cpp.o
	@echo "header: up to date, compiles as C99 and C++11"

FFI_SO         := libsessionrepl.so.$(FFI_VERSION)

install: ffi-lib
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(LIBDIR)/.debug $(DESTDIR)$(INCLUDEDIR) \
	  $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(DOCDIR)
	@mkdir -p $(FFI_BUILD)
	$(OBJCOPY) --only-keep-debug $(FFI_REL)/libsessionrepl.so $(FFI_BUILD)/$(FFI_SO).debug
	$(OBJCOPY) --strip-debug --strip-unneeded \
	  --add-gnu-debuglink=$(FFI_BUILD)/$(FFI_SO).debug \
	  $(FFI_REL)/libsessionrepl.so $(FFI_BUILD)/$(FFI_SO)
	install -m 0755 $(FFI_BUILD)/$(FFI_SO) $(DESTDIR)$(LIBDIR)/$(FFI_SO)
	install -m 0644 $(FFI_BUILD)/$(FFI_SO).debug $(DESTDIR)$(LIBDIR)/.debug/$(FFI_SO).debug
	ln -sf libsessionrepl.so.$(FFI_VERSION) $(DESTDIR)$(LIBDIR)/libsessionrepl.so.$(FFI_MAJOR)
	ln -sf libsessionrepl.so.$(FFI_MAJOR) $(DESTDIR)$(LIBDIR)/libsessionrepl.so
	install -m 0644 $(FFI_REL)/libsessionrepl.a $(DESTDIR)$(LIBDIR)/libsessionrepl.a
	install -m 0644 include/sessionrepl.h $(DESTDIR)$(INCLUDEDIR)/sessionrepl.h
	install -m 0644 docs/C-API.md docs/OPERATIONS.md $(DESTDIR)$(DOCDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(FFI_VERSION)|' \
	    -e 's|@DOCDIR@|$(DOCDIR)|' \
	    sessionrepl.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/sessionrepl.pc

ffi-stage:
	rm -rf $(FFI_STAGE)
	$(MAKE) -f $(firstword $(MAKEFILE_LIST)) --no-print-directory install PREFIX=$(FFI_STAGE) DESTDIR=

ffi-test: ffi-stage ffi-header-check
	@set -e; lib=$(FFI_STAGE)/lib; \
	nm -D --defined-only $$lib/libsessionrepl.so | awk '{print $$3}' | grep -v '^sr_' > $(FFI_BUILD)/extra-exports || true; \
	if [ -s $(FFI_BUILD)/extra-exports ]; then echo "non-sr_ exports:"; cat $(FFI_BUILD)/extra-exports; exit 1; fi; \
	readelf -d $$lib/libsessionrepl.so.$(FFI_VERSION) | grep -q 'SONAME.*libsessionrepl.so.$(FFI_MAJOR)\]'; \
	echo "exports: only sr_*, soname libsessionrepl.so.$(FFI_MAJOR)"
	@set -e; lib=$(FFI_STAGE)/lib; so=$$lib/$(FFI_SO); \
	if readelf -S $$so | grep -q '\.debug_info'; then echo "$$so carries debug info"; exit 1; fi; \
	readelf -S $$so | grep -q '\.gnu_debuglink' || { echo "$$so has no .gnu_debuglink"; exit 1; }; \
	readelf -S $$lib/.debug/$(FFI_SO).debug | grep -q '\.debug_info' || { echo "no separate debug info"; exit 1; }; \
	url=$$(sed -n 's/^URL: *//p' $$lib/pkgconfig/sessionrepl.pc); \
	case "$$url" in file://$(FFI_STAGE)/share/doc/sessionrepl/C-API.md) ;; *) echo "bad .pc URL: $$url"; exit 1;; esac; \
	test -f "$${url#file://}" || { echo ".pc URL names no file: $$url"; exit 1; }; \
	echo "installed .so: stripped ($$(stat -c %s $$so) bytes), debug info in .debug/ ($$(stat -c %s $$lib/.debug/$(FFI_SO).debug) bytes), .pc URL $$url"
	@set -e; for t in $(FFI_TESTS); do \
	  echo "== $$t: ASan+UBSan, static library"; \
	  $(FFI_CC) -std=c99 -g $(FFI_WARN) $(FFI_SAN) $$($(FFI_PKG) --cflags sessionrepl) \
	    ffi-tests/$$t.c -o $(FFI_BUILD)/$$t-asan \
	    $(FFI_STAGE)/lib/libsessionrepl.a $$($(FFI_PKG) --libs-only-l --static sessionrepl | sed 's/-lsessionrepl//'); \
	  (cd $(FFI_BUILD) && $(FFI_ASAN_ENV) ./$$t-asan); \
	  echo "== $$t: valgrind, shared library (mio: valgrind cannot follow io_uring)"; \
	  $(FFI_CC) -std=c99 -g $(FFI_WARN) $$($(FFI_PKG) --cflags sessionrepl) \
	    ffi-tests/$$t.c -o $(FFI_BUILD)/$$t $$($(FFI_PKG) --libs sessionrepl) -lpthread; \
	  (cd $(FFI_BUILD) && SESSIONREPL_IO_BACKEND=mio LD_LIBRARY_PATH=$(FFI_STAGE)/lib $(VALGRIND) -q --error-exitcode=99 \
	    --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
	    ./$$t); \
	done

c-examples-test: ffi-stage
	@set -e; for e in $(FFI_EXAMPLES); do \
	  echo "== $$e"; \
	  $(FFI_CC) -std=c99 $(FFI_WARN) $$($(FFI_PKG) --cflags sessionrepl) c-examples/$$e.c \
	    -o $(FFI_BUILD)/$$e $$($(FFI_PKG) --libs sessionrepl) -lpthread; \
	  if [ -f c-examples/$$e.test.sh ]; then \
	    LD_LIBRARY_PATH=$(FFI_STAGE)/lib sh c-examples/$$e.test.sh ./$(FFI_BUILD)/$$e; \
	  else \
	    LD_LIBRARY_PATH=$(FFI_STAGE)/lib ./$(FFI_BUILD)/$$e; \
	  fi; \
	done
