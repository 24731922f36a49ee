#!/bin/bash
# bench/heldout_rule.py on a lent GPU machine (16 cores, no network), all twenty scenarios side by side
# (about 3.5 minutes on an H200). Before: copy the rule study's matrices into .gpu_data/rule_study
# (cp $DELTAINF_CACHE/rule_study/{mnist5k,cifar}-{badnet,smooth}-seed?.npz .gpu_data/rule_study/) and run
# with carry [".whl", ".gpu_data"]. Returns $OUT/heldout.tgz; here: unpack it and `heldout_rule.py combine`.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
nvidia-smi --query-gpu=name --format=csv,noheader
res=$(mktemp -d)
for d in cifar mnist5k; do for a in badnet smooth; do for s in 0 1 2 3 4; do
  DELTAINF_CACHE=/tmp/cache/$d-$a-$s timeout 420 python3 bench/heldout_rule.py cell "$d:$a:$s" \
    --matrices .gpu_data/rule_study --cifar .gpu_data/cifar10-subset --out $res > $res/$d-$a-$s.log 2>&1 &
done; done; done
wait
tail -qn 1 $res/*.log
(cd $res && tar czf $OUT/heldout.tgz .)
