# Sourced by the other scripts: repo root, toolchain paths, logging.
# Keeps CARGO_HOME/RUSTUP_HOME pointing at the real toolchain even when a
# script later gives test runs their own HOME.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
case ":$PATH:" in
  *":$CARGO_HOME/bin:"*) ;;
  *) PATH="$CARGO_HOME/bin:$PATH" ;;
esac
export PATH
WASM_BINDGEN_VERSION=0.2.130

log() { printf '[shoal] %s\n' "$*"; }
die() { printf '[shoal] ERROR: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
