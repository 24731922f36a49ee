"""Beyond one process: the executor's two engines, their units, and DistributedDataParallel training.

- ``executor``: ``Executor`` / ``executor_for(ComputeConfig)``: ``local`` (this process, the
  reference) or ``ray``; what a training adds to its key (its world size, only when > 1);
- ``plan``: what a factor fit splits into (covariance partitions, eigendecomposition, lambda
  partitions) — a leaf that ``influence`` imports;
- ``units``: one unit as a worker runs it (its own analyzer and folder, an atomic commit);
- ``driver``: sends an engine's missing units to a back-end and merges them in partition order;
- ``ray_engine``: that back-end on Ray core tasks (retried when a worker is lost);
- ``launchers`` / ``replica``: ``train_model`` as a torchrun or Ray Train job;
- ``files``: content-keyed models and image sets that tasks receive as paths.

Kept light: nothing is imported here, so ``influence`` can import ``plan`` without a cycle.
"""
