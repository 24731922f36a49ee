"""The report's words that stand on their own: the explainer for a reader new to the method,
numbers in words, and the one-sentence verdict (SPEC §3). ``report`` assembles them."""

from __future__ import annotations

import numpy as np

from .metrics import SUCCESS_PSR

ATTACK_TOOK_HOLD = 0.5
"""SPEC §3: a poisoned model with PSR under 50% means the attack failed — no verdict on the defence."""

EXPLAINER = (
    "Someone can make an image classifier misbehave on purpose by slipping a few doctored pictures into "
    "its training data. This is called data poisoning. The starting clue is one test image the model gets "
    "wrong in the attacker's favour.",
    "For every training image, an influence score estimates how much that image pushed the model towards "
    "the wrong answer on the clue.",
    "We then make altered copies of the clue — flipped, blurred, recoloured and so on — each given a "
    "different label. The alterations break the attacker's hidden trigger. An ordinary training image's "
    "influence goes up on some copies and down on others, with no consistent direction; a poisoned image "
    "loses its influence on every copy at once, because the trigger was its only link to the clue. This "
    "consistent loss is the influence collapse: in the plots below, poisoned images lose on every kind of "
    "copy the influence they had on the clue, while ordinary ones scatter on both sides of zero.",
    "Images whose influence collapses consistently are flagged; an analyst may review the flagged set; then "
    "their effect is removed from the model (unlearning). It worked when the attack stops succeeding — the "
    "poison success rate falls below 5% — while accuracy on ordinary images stays about the same.",
)



def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100.0 * x:.1f}%"


def evidence_text(name: str, value: float) -> str:
    """Short evidence captions that do not wrap: "d 17.4", "48/50 votes", "score 3.2e+04"."""
    if name.startswith("votes"):
        total = name.split()[-1]
        return f"{int(value)}/{total} votes" if total.isdigit() else f"{int(value)} votes"
    if name == "d":
        return "d ∞" if np.isinf(value) and value > 0 else f"d {value:.1f}"
    return f"{name or 'score'} {value:.3g}"


def verdict(results: dict) -> tuple[str, bool | None]:
    """One sentence on the outcome and whether it is a success (None: no verdict possible).

    SPEC §3: success when PSR after < 5%, or at/below the oracle retrain's PSR where that
    floor is itself ≥ 5%; a poisoned PSR under 50% means the attack never took hold.
    """
    before = (results.get("poisoned") or {}).get("poison_success_rate")
    un = results.get("unlearned")
    if before is not None and before < ATTACK_TOOK_HOLD:
        return (f"The attack did not take hold (poison success rate {pct(before)} before any cleaning), "
                "so this run says nothing about the defence.", None)
    if not un:
        why = results.get("unlearn_error")
        return ("Nothing was unlearned" + (f": {why}" if why else " (no training image was flagged)") + ".", None)
    if un.get("verdict"):  # the run's own sentence (``unlearning.verdict``), when the results carry it
        text = str(un["verdict"]).strip()
        return text[0].upper() + text[1:].rstrip(".") + ".", un.get("removed")
    after, oracle = un.get("poison_success_rate"), un.get("oracle_poison_success_rate")
    if after is None:
        return ("There is no known attack here, so the poison success rate cannot be measured; "
                "check that the affected image is now classified correctly.", None)
    if after < SUCCESS_PSR:
        return (f"The attack is defeated: the poison success rate fell from {pct(before)} to {pct(after)} "
                f"(below {SUCCESS_PSR:.0%}).", True)
    if oracle is not None and oracle >= SUCCESS_PSR and after <= oracle:
        return (f"The attack is defeated as far as it can be: the poison success rate fell to {pct(after)}, no "
                f"higher than a model retrained without exactly the true poisons ({pct(oracle)}).", True)
    return (f"The attack survives: the poison success rate is still {pct(after)} "
            f"(success needs below {SUCCESS_PSR:.0%}).", False)
