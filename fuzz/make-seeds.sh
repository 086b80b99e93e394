#!/bin/sh
# Writes the seed inputs of the fuzz targets into seeds/<target>/seed-*: a few real specs,
# and small real archives made with buildimage itself (plus one repacked by GNU tar: PAX
# headers, members in reverse order, gzipped layers, an extra link).
#
#   fuzz/make-seeds.sh [BUILDIMAGE]     (default: target/release/buildimage, built first)
#
# The seeds are committed; run this again only to change them. Output is deterministic:
# buildimage's archives are, and GNU tar is given fixed owners, times and order.
# Files named regression-* beside them are inputs that once broke a target, kept by hand.
set -eu
umask 022
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
bin=${1:-}
if [ -z "$bin" ]; then
    cargo build --quiet --release --locked -p buildimage-cli --manifest-path "$root/Cargo.toml"
    bin=$root/target/release/buildimage
fi
specs=$here/seeds/spec
bases=$here/seeds/base_image
mkdir -p "$specs" "$bases"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unset SOURCE_DATE_EPOCH

# --- specs -----------------------------------------------------------------------------
cp "$root/examples/busybox/spec.json" "$specs/seed-busybox"
cat >"$specs/seed-redis" <<'EOF'
{
  "name": "redis",
  "tag": "latest",
  "fromImage": "bash.tar.gz",
  "extraCommands": "mkdir -p data",
  "config": {
    "Cmd": ["/bin/redis-server"],
    "WorkingDir": "/data",
    "Volumes": { "/data": {} },
    "Healthcheck": {
      "Test": ["CMD-SHELL", "/usr/bin/healthcheck"],
      "Interval": 30000000000,
      "Timeout": 10000000000,
      "Retries": 3
    }
  }
}
EOF
cat >"$specs/seed-nix-eval-every-key" <<'EOF'
{"architecture":null,"buildVMMemorySize":512,"closureInfo":null,"compressor":"gz","config":null,"contents":null,"copyToRoot":null,"created":"1970-01-01T00:00:01Z","diskSize":1024,"extraCommands":"","fromImage":null,"fromImageName":null,"fromImageTag":null,"gid":0,"includeNixDB":false,"inheritConfig":false,"keepContentsDirlinks":false,"meta":{},"name":"hello","runAsRoot":null,"runAsRootShell":null,"tag":null,"uid":0}
EOF
cat >"$specs/seed-root-mode" <<'EOF'
{"name": "registry-1.docker.io:5000/library/root", "tag": "v1.2_3-x", "contents": ["/nix/store/00000000000000000000000000000000-root", "./etc"],
 "runAsRoot": "touch /example-file", "runAsRootShell": "/bin/sh", "inheritConfig": true,
 "fromImage": "base.tar", "fromImageName": "base", "fromImageTag": "1",
 "keepContentsDirlinks": true, "closureInfo": "closure", "uid": 1000, "gid": 100,
 "created": "2000-02-29T12:00:00.123456789+05:30", "compressor": "zstd", "includeNixDB": true,
 "architecture": "arm64", "config": {"Env": ["A=1"], "Entrypoint": ["/bin/sh"], "Labels": {"k": "v"}}}
EOF

# --- base images -----------------------------------------------------------------------
build() { # SPEC-JSON OUT
    printf '%s\n' "$1" >"$work/spec.json"
    "$bin" build "$work/spec.json" -o "$2" 2>/dev/null
}
mkdir -p "$work/empty" "$work/tree/etc" "$work/tree/bin" "$work/top"
printf 'hello\n' >"$work/tree/etc/motd"
printf '#!/bin/sh\necho hi\n' >"$work/tree/bin/hi"
chmod 0755 "$work/tree/bin/hi"
ln -s hi "$work/tree/bin/sh"
ln -s /etc/motd "$work/tree/motd-link"
long=$(printf 'n%.0s' $(seq 1 120))
printf 'long\n' >"$work/tree/etc/$long"
printf 'top\n' >"$work/top/top"

build '{"name": "seed/empty", "tag": "1", "compressor": "none"}' "$bases/seed-empty-none"
build '{"name": "seed/tree", "tag": "1", "copyToRoot": "tree", "compressor": "none",
        "config": {"Env": ["A=1"], "Cmd": ["/bin/hi"]}}' "$work/tree.tar"
cp "$work/tree.tar" "$bases/seed-tree-none"
build '{"name": "seed/tree", "tag": "1", "copyToRoot": "tree", "compressor": "gz"}' \
    "$bases/seed-tree-gz"
build '{"name": "seed/tree", "tag": "1", "copyToRoot": "tree", "compressor": "zstd"}' \
    "$bases/seed-tree-zstd"
build "{\"name\": \"seed/two\", \"tag\": \"2\", \"copyToRoot\": \"top\", \"compressor\": \"none\",
        \"fromImage\": \"$work/tree.tar\", \"inheritConfig\": true}" "$bases/seed-two-layers-none"

# The tree image repacked by GNU tar as PAX, members in reverse order, each layer gzipped:
# what other tools write, in a form buildimage never does.
mkdir "$work/unpacked"
tar -xf "$work/tree.tar" -C "$work/unpacked"
for layer in "$work"/unpacked/*/layer.tar; do
    gzip -n -9 <"$layer" >"$layer.gz" && mv "$layer.gz" "$layer"
done
# The layer's diff_id no longer matches its (now compressed) bytes' digest, which the
# reader must accept: diff_ids are digests of the uncompressed tar.
# A member with a long name (a PAX path record) and a link to a layer, both unused.
mkdir "$work/unpacked/extra"
printf 'unused\n' >"$work/unpacked/extra/$long$long"
(cd "$work/unpacked" && ln -s ../"$(ls -d ./*/layer.tar | head -n 1)" extra/layer-link)
(cd "$work/unpacked" && find . -mindepth 1 | LC_ALL=C sort -r) >"$work/order"
tar --format=pax --owner=0 --group=0 --numeric-owner --mtime=@315532800 \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --no-recursion -C "$work/unpacked" -cf "$bases/seed-tree-pax-gzip-layers" -T "$work/order"

ls -l "$specs" "$bases"
