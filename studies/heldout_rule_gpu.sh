#!/bin/bash
# studies/heldout_rule.py on a lent GPU machine (16 cores, no network), all twenty scenarios side by side.
# Run with carry [".whl", ".gpu_data"] (wheels in .whl/, the CIFAR subset in .gpu_data/cifar10-subset).
#  - With the rule study's matrices copied into .gpu_data/rule_study
#    (cp $DELTAINF_CACHE/rule_study/{mnist5k,cifar}-{badnet,smooth}-seed?.npz .gpu_data/rule_study/),
#    only the cells run (about 3.5 minutes on an H200, 2026-11-26).
#  - Without them, each scenario's matrix is collected on the GPU first (rule_study.py collect), in the same
#    cache as its cell, and the matrices come back too.
# Returns $OUT/heldout.tgz (cells, logs, the CUDA smoke test) and, when collected here, $OUT/matrices-*.tgz
# (one per dataset and attack: the device tool brings back files of at most 16 MiB). Here: unpack them,
# `heldout_rule.py combine heldout-*.json`, and point rule_study.py table at the matrices.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
sub=.gpu_data/cifar10-subset
res=$(mktemp -d)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $res/gpu.txt
python3 -c "import sys, torch; print(sys.version.split()[0], torch.__version__)" | tee -a $res/gpu.txt
mat=.gpu_data/rule_study
if ! ls $mat/*.npz > /dev/null 2>&1; then mat=$res/matrices; mkdir -p $mat; fi
one() {  # dataset attack seed: collect (when needed), then the cell, in one cache
  local c=/tmp/cache/$1-$2-$3 s=$(date +%s)
  [ -f $mat/$1-$2-seed$3.npz ] || DELTAINF_CACHE=$c python3 studies/rule_study.py collect --datasets $1 --attacks $2 \
    --seeds $3 --matrix-dir $mat --cifar $sub
  DELTAINF_CACHE=$c python3 studies/heldout_rule.py cell "$1:$2:$3" --matrices $mat --cifar $sub --out $res
  echo "$1-$2-$3 rc=$? $(( $(date +%s) - s ))s" >> $res/jobs.txt
}
for d in cifar mnist5k; do for a in badnet smooth; do for s in 0 1 2 3 4; do
  timeout ${CELL_TIMEOUT:-470} bash -c "$(declare -f one); mat=$mat res=$res sub=$sub one $d $a $s" > $res/$d-$a-$s.log 2>&1 &
done; done; done
timeout 150 python3 -m pytest -q -p no:cacheprovider -m "" tests/test_cuda_smoke.py 2>&1 | tail -4 > $res/smoke.log
wait
cat $res/jobs.txt $res/smoke.log
tail -qn 1 $res/*.log
if [ "$mat" = "$res/matrices" ]; then
  for d in cifar mnist5k; do for a in badnet smooth; do
    (cd $mat && tar czf $OUT/matrices-$d-$a.tgz $d-$a-seed*.npz 2>/dev/null)
  done; done
  mv $mat /tmp/matrices-sent
fi
(cd $res && tar czf $OUT/heldout.tgz .)
ls -la $OUT
