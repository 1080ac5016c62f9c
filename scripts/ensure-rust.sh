#!/usr/bin/env bash
# Check that a Rust toolchain (cargo) is available.
#
# Can be executed or sourced. When sourced (as .ci/run does) it also leaves
# ~/.cargo/bin on the caller's PATH if cargo was only found there.

_ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        local cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
        if [[ -x "$cargo_bin/cargo" ]]; then
            export PATH="$cargo_bin:$PATH"
            printf '[setup] added %s to PATH\n' "$cargo_bin"
        fi
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        printf '[setup] ERROR: cargo not found. Rust is needed; install it with rustup:\n' >&2
        printf '    curl --proto =https --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y\n' >&2
        # shellcheck disable=SC2016 # literal command for the user
        printf '    . "$HOME/.cargo/env"\n' >&2
        return 1
    fi
    printf '[setup] rust: %s\n' "$(cargo --version)"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    _ensure_rust
else
    _ensure_rust || return 1
fi
