#!/bin/bash
# What was run on a lent H100 (16 cores; no network: wheels for kronfluence, einconv, diskcache, mlxtend carried in .whl/).
# CUDA smoke tests, the default run cold and warm, default-workload scoring, then bench/scaling.py at 5k/20k/50k.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD DELTAINF_CACHE=/tmp/cache PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/gpu.txt
python3 -c "import torch, kronfluence; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'threads', torch.get_num_threads())" | tee -a $OUT/gpu.txt
timeout 150 python3 -m pytest -q -p no:cacheprovider -m "" tests/test_cuda_smoke.py 2>&1 | tail -5 | tee $OUT/smoke.log
for i in cold warm; do
  { time python3 -m deltainf_core run --dataset mnist5k --seed 0 --quiet --out $OUT/run-mnist5k-$i.json ; } 2> $OUT/run-$i.err
  echo "$i:"; tail -4 $OUT/run-$i.err
done
timeout 200 python3 -m bench.influence_passes --repeats 3 2>&1 | tail -12 | tee $OUT/passes.log
cp bench/results/influence_passes.json $OUT/influence_passes-cuda.json 2>/dev/null
t0=$(date +%s)
python3 -m bench.scaling build --n 50000 --out /tmp/data/cifar-aug --nested 5000,20000 --source ${CIFAR_SUBSET:-../shared/data/cifar10-subset}
echo "built in $(( $(date +%s) - t0 )) s" | tee $OUT/scaling.log
timeout 450 python3 -m bench.scaling run --cache-root /tmp/scache \
  --data-dirs /tmp/data/cifar-aug-5000,/tmp/data/cifar-aug-20000,/tmp/data/cifar-aug 2>&1 | tee -a $OUT/scaling.log
cp bench/results/scaling-run.json $OUT/scaling-run-cuda.json
