#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# nbdcopy of a half-allocated 4 GiB dynamic VHDX (1 MiB blocks, every other
# block written) to null:, served by nbdkit through nbdkit-vhdx-plugin and
# through QEMU (qemu-nbd run by nbdkit's nbd plugin), in the same run.
# Prints a markdown table row: both times, the best of RUNS each after one
# warm-up run, and the ratio.
#
#   bench-nbdkit.sh [PLUGIN]
#
# PLUGIN defaults to $VHDX_NBDKIT_PLUGIN, then build/src/nbdkit/ of the source
# tree.  The image is made once (with qemu-img and qemu-io) in
# $VHDX_BENCH_DATA (default /var/tmp/vhdx-bench-nbdkit).  Fails only when a
# tool fails or the two servers read different bytes.

# nbdkit expands $uri in the --run commands, not this shell.
# shellcheck disable=SC2016
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
plugin=${1:-${VHDX_NBDKIT_PLUGIN:-$top/build/src/nbdkit/nbdkit-vhdx-plugin.so}}
data=${VHDX_BENCH_DATA:-/var/tmp/vhdx-bench-nbdkit}
runs=${RUNS:-3}
image=$data/half-4g-1m.vhdx

say() {
    printf '==> %s\n' "$*" >&2
}

for tool in nbdkit nbdcopy qemu-img qemu-io qemu-nbd sha256sum; do
    if ! command -v "$tool" >/dev/null; then
        say "$tool is not installed: nothing to measure"
        exit 77
    fi
done
if [ ! -f "$plugin" ]; then
    say "no plugin at $plugin"
    exit 1
fi

mkdir -p "$data"
if [ ! -f "$image.done" ]; then
    say "making $image (once)"
    rm -f "$image"
    qemu-img create -q -f vhdx -o subformat=dynamic,block_size=1M "$image" 4G
    # qemu-io reads its commands from standard input; without flushes
    # (cache=unsafe) the 2048 allocations take seconds, not minutes.
    for ((block = 0; block < 4096; block += 2)); do
        echo "write -P $((block % 255 + 1)) ${block}M 1M"
    done | qemu-io -t unsafe -f vhdx "$image" >/dev/null
    touch "$image.done"
fi

# Each server as an nbdkit command line; nbdcopy reads from "$uri".
ours=(nbdkit -U - "$plugin" "file=$image")
qemu=(nbdkit -U - nbd command=qemu-nbd arg=-f arg=vhdx arg=-r "arg=$image")

# Seconds taken by nbdcopy of the whole disk to null: (best of $runs).
measure() {
    local best='' start end seconds i
    "$@" --run 'nbdcopy "$uri" null:' # warm-up: the page cache, the BAT
    for ((i = 0; i < runs; i++)); do
        start=$(date +%s%N)
        "$@" --run 'nbdcopy "$uri" null:'
        end=$(date +%s%N)
        seconds=$(awk -v ns=$((end - start)) 'BEGIN { printf "%.3f", ns / 1e9 }')
        if [ -z "$best" ] || awk -v a="$seconds" -v b="$best" 'BEGIN { exit !(a < b) }'; then
            best=$seconds
        fi
    done
    echo "$best"
}

checksum() {
    "$@" --run 'nbdcopy "$uri" -' | sha256sum | cut -d' ' -f1
}

say "checking that both servers read the same disk"
sum_ours=$(checksum "${ours[@]}")
sum_qemu=$(checksum "${qemu[@]}")
if [ "$sum_ours" != "$sum_qemu" ]; then
    say "the servers disagree: plugin $sum_ours, qemu-nbd $sum_qemu"
    exit 1
fi

say "nbdcopy to null: through nbdkit-vhdx-plugin"
t_ours=$(measure "${ours[@]}")
say "nbdcopy to null: through qemu-nbd (nbdkit nbd plugin)"
t_qemu=$(measure "${qemu[@]}")
ratio=$(awk -v a="$t_qemu" -v b="$t_ours" 'BEGIN { printf "%.1f", a / b }')

echo "| case | nbdkit-vhdx-plugin | qemu-nbd via nbdkit | qemu / plugin |"
echo "|---|---|---|---|"
echo "| nbdcopy to null:, 4 GiB dynamic, 1 MiB blocks, half allocated | ${t_ours} s | ${t_qemu} s | ${ratio}× |"
