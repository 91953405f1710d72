#!/usr/bin/env bash
# Installs what `make test` and `make bench` need beyond the Rust toolchain.
# Idempotent and quick when everything is present. Root is expected (apt).
set -euo pipefail

need_apt=()
[ -f /usr/share/java/tomcat10-tribes.jar ] || need_apt+=(libtomcat10-java)
command -v javac >/dev/null 2>&1 || need_apt+=(default-jdk-headless)
command -v valgrind >/dev/null 2>&1 || need_apt+=(valgrind)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "deps: installing ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "deps: missing ${need_apt[*]} (not root: skipping; tests that need them will say so)"
  fi
fi

if ! command -v cbindgen >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cbindgen" ]; then
  echo "deps: cargo install cbindgen"
  cargo install --quiet --locked cbindgen --version 0.29.4
fi
if ! command -v cargo-fuzz >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
  echo "deps: cargo install cargo-fuzz"
  cargo install --quiet --locked cargo-fuzz --version 0.13.2
fi
echo "deps: ok"
