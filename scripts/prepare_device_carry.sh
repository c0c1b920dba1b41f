#!/usr/bin/env bash
# Prepare what scripts/device_check.sh needs on a GPU machine that reaches nothing: run it here,
# where the network is, before asking for the machine. Nothing it writes is committed
# (third_party/ is git-ignored): the official code never enters this repository.
#
#   bash scripts/prepare_device_carry.sh OFFICIAL_GIT
#
# OFFICIAL_GIT: a clone of nv-tlabs/PiD, or its bare git directory (a mirror). Writes
#   third_party/PiD/         the official package's Python source and LICENSE at that clone's HEAD,
#                            with COMMIT (the commit it came from); device_check.sh finds it there
#   third_party/wheels/      wheels for Python 3.12 manylinux x86_64 of what the device image lacks
# then checks that the working tree plus these folders stays under the 64 MiB that travels, and
# prints the paths to carry with the command.
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -eq 1 ] || { echo "usage: bash scripts/prepare_device_carry.sh OFFICIAL_GIT (a clone or bare mirror of nv-tlabs/PiD)" >&2; exit 2; }
SOURCE=$1
GIT_DIR="$SOURCE"
[ -d "$SOURCE/.git" ] && GIT_DIR="$SOURCE/.git"
git --git-dir="$GIT_DIR" cat-file -e HEAD:pid/_src/networks/pid_net.py 2> /dev/null \
  || { echo "$SOURCE is not a git clone of nv-tlabs/PiD (no pid/_src/networks/pid_net.py at HEAD)" >&2; exit 2; }
LIMIT_BYTES=$((64 << 20))
# What the official network imports beyond torch (loguru, nvidia-ml-py's pynvml) and the extra
# attention baseline (sageattention). The device image has nvidia-ml-py but not loguru or
# sageattention (its package list in the device docs); the carried copy also serves images without it.
WHEELS=(loguru==0.7.3 nvidia-ml-py==13.615.71 sageattention==1.0.6)

echo "official source: $(git --git-dir="$GIT_DIR" rev-parse HEAD) of $SOURCE"
rm -rf third_party/PiD && mkdir -p third_party/PiD
git --git-dir="$GIT_DIR" ls-tree -r --name-only HEAD pid | grep '\.py$' \
  | xargs git --git-dir="$GIT_DIR" archive HEAD LICENSE | tar -x -C third_party/PiD
git --git-dir="$GIT_DIR" rev-parse HEAD > third_party/PiD/COMMIT

rm -rf third_party/wheels && mkdir -p third_party/wheels
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d third_party/wheels "${WHEELS[@]}"

tree_bytes=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2> /dev/null | tail -n 1 | cut -f1)
carry_bytes=$(du -sb third_party/PiD third_party/wheels | awk '{s += $1} END {print s}')
total=$((tree_bytes + carry_bytes))
printf 'working tree %.1f MiB + carry %.1f MiB = %.1f MiB (limit 64 MiB)\n' \
  "$(echo "$tree_bytes / 1048576" | bc -l)" "$(echo "$carry_bytes / 1048576" | bc -l)" "$(echo "$total / 1048576" | bc -l)"
if [ "$total" -ge "$LIMIT_BYTES" ]; then
  echo "too large to travel: remove untracked files or carry less" >&2
  exit 1
fi
echo "carry: third_party/PiD third_party/wheels"
echo "command: bash scripts/device_check.sh"
