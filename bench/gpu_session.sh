#!/bin/bash
# What runs on a lent GPU machine (16 cores, no network): wheels for kronfluence, einconv, diskcache and
# mlxtend carried in .whl/, the CIFAR subset carried at $CIFAR_SUBSET (default .gpu_data/cifar10-subset).
# CUDA smoke tests, default-workload scoring, bench/scaling.py at 5k/20k/50k, then the unlearning suite as
# four shards side by side. About 7 minutes on an H200 (session 6); results land in $OUT.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD DELTAINF_CACHE=/tmp/cache PYTHONUNBUFFERED=1
subset=${CIFAR_SUBSET:-.gpu_data/cifar10-subset}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/gpu.txt
timeout 120 python3 -m pytest -q -p no:cacheprovider -m "" tests/test_cuda_smoke.py 2>&1 | tail -4 | tee $OUT/smoke.log
timeout 120 python3 -m bench.influence_passes --repeats 3 2>&1 | tail -6 | tee $OUT/passes.log
cp bench/results/influence_passes-cuda.json $OUT/
python3 -m bench.scaling build --n 50000 --out /tmp/data/cifar-aug --nested 5000,20000 --source $subset
timeout 300 python3 -m bench.scaling run --cache-root /tmp/scache \
  --data-dirs /tmp/data/cifar-aug-5000,/tmp/data/cifar-aug-20000,/tmp/data/cifar-aug 2>&1 | tail -3
cp bench/results/scaling-run.json $OUT/scaling-run-cuda.json
for d in mnist5k cifar10-subset; do for a in badnet smooth; do   # then, here: unlearning_suite.py --combine
  timeout 300 python3 bench/unlearning_suite.py --datasets $d --attacks $a --cifar-subset $subset \
    --out $OUT/us-$d-$a.json > /tmp/us-$d-$a.log 2>&1 &
done; done
wait
tail -n 3 /tmp/us-*.log
