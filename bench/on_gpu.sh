#!/bin/bash
# What runs on a lent GPU machine (16 cores, no network): wheels for kronfluence, einconv, diskcache and
# mlxtend carried in .whl/, the CIFAR subset carried at $CIFAR_SUBSET (default .gpu_data/cifar10-subset).
# Run it with carry [".whl", ".gpu_data"] and a timeout of about 9 minutes.
#  1. CUDA smoke tests and default-workload scoring;
#  2. the benchmark batch, 13 jobs side by side on one shared cache (about 2 minutes on an H200, 2026-11-26):
#     the unlearning grid as four shards, the attack compares (mnist5k and CIFAR, seeds 0-2), the CIFAR
#     Witches' Brew compares (seeds 0-1) and core_pipeline;
#  3. bench/scaling.py at 5k/20k/50k, alone (its timings are the result; about 4 minutes).
# Everything lands in one archive, $OUT/gpu-batch.tgz: the device tool brings back only a limited
# number of files. Here: unpack it, `unlearning_suite.py --combine us-*.json`, rename the compares
# and stamp them (bench/provenance.py).
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD DELTAINF_CACHE=/tmp/cache PYTHONUNBUFFERED=1
sub=${CIFAR_SUBSET:-.gpu_data/cifar10-subset}
res=$(mktemp -d)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $res/gpu.txt
python3 -c "import sys, torch; print(sys.version.split()[0], torch.__version__)" | tee -a $res/gpu.txt
timeout 120 python3 -m pytest -q -p no:cacheprovider -m "" tests/test_cuda_smoke.py 2>&1 | tail -4 | tee $res/smoke.log
timeout 120 python3 -m bench.influence_passes --repeats 3 2>&1 | tail -6 | tee $res/passes.log
cp bench/results/influence_passes-cuda.json $res/ 2>/dev/null

job() { local name=$1; shift; local s=$(date +%s); OMP_NUM_THREADS=1 timeout 460 "$@" > $res/$name.log 2>&1
        echo "$name rc=$? $(( $(date +%s) - s ))s" >> $res/jobs.txt; }
for d in mnist5k cifar10-subset; do for a in badnet smooth; do
  job us-$d-$a python3 bench/unlearning_suite.py --datasets $d --attacks $a --cifar-subset $sub --out $res/us-$d-$a.json &
done; done
for s in 0 1 2; do
  mkdir -p $res/ca$s $res/ma$s
  job ca$s python3 -m deltainf_core compare --data-dir $sub --attacks badnet,smooth --detectors delta --seed $s --quiet --out-dir $res/ca$s &
  job ma$s python3 -m deltainf_core compare --attacks badnet,smooth --detectors delta --seed $s --quiet --out-dir $res/ma$s &
done
for s in 0 1; do
  mkdir -p $res/wb$s
  job wb$s python3 -m deltainf_core compare --data-dir $sub --attacks witches_brew --detectors delta --seed $s --brew-targets 3 --quiet --out-dir $res/wb$s &
done
job cp python3 -m bench.core_pipeline --cifar $sub --out $res/core_pipeline.json &
wait
cat $res/jobs.txt

python3 -m bench.scaling build --n 50000 --out /tmp/data/cifar-aug --nested 5000,20000 --source $sub > $res/build.log 2>&1
timeout 300 python3 -m bench.scaling run --cache-root /tmp/scache \
  --data-dirs /tmp/data/cifar-aug-5000,/tmp/data/cifar-aug-20000,/tmp/data/cifar-aug 2>&1 | tail -3
cp bench/results/scaling-run.json $res/scaling-run-cuda.json
(cd $res && tar czf $OUT/gpu-batch.tgz .)
