#!/bin/bash
# The paper's grid on a lent GPU (bench/paper_grid.py): as many cells as fit in the lease, written one file
# each, so a second lease (or the CPU) resumes where this one stopped. Nothing is installed beyond the
# wheels the image lacks (kronfluence, einconv, diskcache, mlxtend, carried in .whl/).
#
# The full CIFAR-10 is 57 MB of JPEG files: copy ../shared/data/cifar10 to .gpu_data/cifar10 (ignored by git)
# and carry it with .whl; with the working tree that is close to the 64 MiB a call may carry, so when a
# call is refused for size, carry .gpu_data/cifar10/train in one call and .gpu_data/cifar10/test plus .whl
# in the next on the same warm machine (carried folders stay there between calls).
#
#   GRID_BUDGET_S=420 bash bench/paper_grid_gpu.sh        # device run, timeout_s about 540
#
# The cells come back as one archive, $OUT/paper-grid-cells.tgz; unpack it into
# bench/results/paper_grid/cifar10/ (existing cells are never overwritten: they are the same cells).
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD DELTAINF_CACHE=${DELTAINF_CACHE:-/tmp/cache} PYTHONUNBUFFERED=1
data=${GRID_DATA:-.gpu_data/cifar10}
cells=$(mktemp -d)
# cells already measured elsewhere are not run again
cp bench/results/paper_grid/cifar10/*.json "$cells"/ 2>/dev/null
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$cells/gpu.txt"
timeout "$(( ${GRID_BUDGET_S:-420} + 120 ))" python3 -m bench.paper_grid run --data-dir "$data" --out "$cells" \
  --budget-s "${GRID_BUDGET_S:-420}" --attacks "${GRID_ATTACKS:-badnet,smooth,witches_brew}" \
  --seeds "${GRID_SEEDS:-0,1,2}" --affected 5,1 2>&1 | tee "$cells/grid.log" | grep -v '^\[.\{8\}\]   '
tar -czf "$OUT/paper-grid-cells.tgz" -C "$cells" .
