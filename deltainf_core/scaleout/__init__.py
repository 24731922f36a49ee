"""Beyond one process: the local and ray engines, their units, and DistributedDataParallel training."""
