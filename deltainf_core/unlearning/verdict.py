"""One plain sentence on what an unlearning run did to the attack (the Unlearn page and the JSON).

A green metric beside a surviving backdoor is the failure this guards against: the
verdict states the poison success rate after unlearning in words, against the paper's
bar (PSR < 5 %) or — on small test sets where a clean retrain itself shows a higher
rate — against the oracle retrain's own floor (SPEC §3).
"""

from __future__ import annotations

from ..registry import FAMILIES

SUCCESS_PSR = 0.05
"""The paper's bar: an unlearning run succeeds when PSR falls below 5 %."""


def percent(rate: float) -> str:
    """Whole percent, with one decimal below 10 % (4.7 % must not read as the 5 % bar)."""
    return f"{100 * rate:.1f}%" if rate < 0.1 else f"{100 * rate:.0f}%"


def attack_verdict(psr_after: float | None, psr_before: float | None = None,
                   oracle_psr: float | None = None) -> dict:
    """``{"removed": bool | None, "text": str}`` for a PSR after unlearning.

    removed is None when the scenario has no success rate (no attack, own model).
    """
    if psr_after is None:
        return {"removed": None, "text": "no triggered test images: the attack's success cannot be measured"}
    floor = max(SUCCESS_PSR, oracle_psr) if oracle_psr is not None else SUCCESS_PSR
    pct = f"PSR {percent(psr_after)}"
    if psr_before is not None and psr_before < 0.5:
        return {"removed": None, "text": f"{pct}: the attack never implanted (PSR {percent(psr_before)} before)"}
    if psr_after < SUCCESS_PSR:
        return {"removed": True, "text": f"{pct}: the backdoor is gone"}
    if oracle_psr is not None and psr_after <= floor:
        return {"removed": True, "text": f"{pct}: at the oracle retrain's own floor ({percent(oracle_psr)}), "
                                         "so the backdoor is gone"}
    if psr_before is not None and psr_after < psr_before / 2:
        return {"removed": False, "text": f"{pct}: the backdoor was weakened but survived "
                                          f"(from {percent(psr_before)})"}
    return {"removed": False, "text": f"{pct}: the backdoor survived"}


def unlearning_verdict(method: str, info: dict, psr_after: float | None, psr_before: float | None = None,
                       oracle_psr: float | None = None, accuracy_change: float | None = None) -> dict:
    """The attack verdict, the accuracy it cost, the method's own note and, when the attack
    survived, the method's known limit, as one text.

    accuracy_change: clean accuracy after minus before (negative = lost), if known.
    """
    out = attack_verdict(psr_after, psr_before, oracle_psr)
    parts = [out["text"]]
    if accuracy_change is not None and accuracy_change <= -0.02:
        parts.append(f"clean accuracy fell {100 * -accuracy_change:.1f} points")
    if info.get("note"):
        parts.append(str(info["note"]))
    reason = known_limit(method) if out["removed"] is False else ""
    if reason:
        parts.append(f"known limit: {reason}")
    return {"method": method, "removed": out["removed"], "text": "; ".join(parts)}


def known_limit(method: str) -> str:
    """The registered reason ``method`` can leave a backdoor in place ("" for an unknown method).

    Read through ``FAMILIES``, so this module never imports the package that imports it."""
    unlearners = FAMILIES["unlearner"]
    return str(unlearners.trait(method, "fails_because")) if method in unlearners else ""
