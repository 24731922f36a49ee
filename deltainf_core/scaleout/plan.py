"""What a factor fit and a score pass split into: the units every engine computes and the cache keys.

A leaf module (kronfluence's arguments and NumPy only), so ``influence`` can describe its units
without importing the back-ends that run them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from kronfluence.arguments import FactorArguments

if TYPE_CHECKING:
    from ..config import InfluenceConfig
    from ..data.base import ImageSet

LAMBDA_SEED = 10_000
"""Lambda partition ``p`` samples its labels with seed ``LAMBDA_SEED + p`` (covariance partition ``p``: ``p``)."""


@dataclass(frozen=True)
class FactorPlan:
    """A factor fit as its units: covariance partitions, the eigendecomposition, lambda partitions.

    order: the order kronfluence reads the training set in (shuffled where a cap binds: its caps
        take the *first* N examples); None: as stored.
    """

    args: FactorArguments
    order: np.ndarray | None
    cov_n: int
    lam_n: int
    cov_parts: int
    lam_parts: int
    batch: int

    @classmethod
    def of(cls, cfg: InfluenceConfig, n: int, chunk: int, amp: torch.dtype | None) -> FactorPlan:
        """The plan for ``n`` training images in partitions of ``chunk`` images."""
        cov_n = min(n, cfg.covariance_max_examples or n)
        lam_n = min(n, cfg.lambda_max_examples or n)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).numpy() if min(cov_n, lam_n) < n \
            else None
        cov_parts, lam_parts = math.ceil(cov_n / chunk), math.ceil(lam_n / chunk)
        args = FactorArguments(
            strategy=cfg.strategy, amp_dtype=amp,
            covariance_max_examples=cfg.covariance_max_examples if cov_n < n else None,
            lambda_max_examples=cfg.lambda_max_examples if lam_n < n else None,
            covariance_data_partitions=cov_parts, lambda_data_partitions=lam_parts,
        )
        return cls(args, order, cov_n, lam_n, cov_parts, lam_parts, min(cfg.train_batch_size, n))

    def steps(self) -> list[str]:
        """Unit names in the order the fit needs them (also the factor folder's manifest steps)."""
        return ([f"covariance{p}" for p in range(self.cov_parts)] + ["eigen"]
                + [f"lambda{p}" for p in range(self.lam_parts)])

    def images(self, step: str) -> float:
        """Images a unit reads (its share of the progress bar; the eigendecomposition reads none)."""
        if step == "eigen":
            return 0.0
        return self.cov_n / self.cov_parts if step.startswith("covariance") else self.lam_n / self.lam_parts


def split_step(step: str) -> tuple[str, int]:
    """``"covariance3"`` → ``("covariance", 3)``; ``"eigen"`` → ``("eigen", 0)``."""
    kind = step.rstrip("0123456789")
    return kind, int(step[len(kind):] or 0)


class UnitRunner(Protocol):
    """Runs an engine's units elsewhere (``scaleout``): fills its factor folder, commits score chunks.
    ``engine`` is an ``influence.InfluenceEngine``, left untyped here so this module imports no engine."""

    def fit_factors(self, engine: Any) -> None: ...

    def score_chunks(self, engine: Any, queries: ImageSet, chunks: list[tuple[str, int, int]]) -> None:
        ...
