"""The plain verdict the Unlearn page and the JSON show: a surviving backdoor is never a green metric."""

from __future__ import annotations

from deltainf_core.unlearning import attack_verdict, unlearning_verdict


def test_a_surviving_backdoor_is_called_so():
    v = attack_verdict(0.97, psr_before=0.99)
    assert v["removed"] is False
    assert v["text"] == "PSR 97%: the backdoor survived"


def test_a_removed_backdoor_and_the_oracle_floor():
    assert attack_verdict(0.01, 0.99)["removed"] is True
    # A 380-image CIFAR test set: a clean retrain itself calls 9% of triggered airplanes "automobile".
    at_floor = attack_verdict(0.08, 0.99, oracle_psr=0.093)
    assert at_floor["removed"] is True and "floor" in at_floor["text"]
    above = attack_verdict(0.12, 0.99, oracle_psr=0.093)
    assert above["removed"] is False


def test_weakened_not_removed_and_attacks_that_never_implanted():
    assert "weakened but survived" in attack_verdict(0.25, 0.99)["text"]
    assert attack_verdict(0.02, 0.3)["removed"] is None
    assert attack_verdict(None)["removed"] is None


def test_the_method_note_and_the_accuracy_cost_are_part_of_the_text():
    v = unlearning_verdict("ssd", {"note": "SSD selected no weights at alpha 10: the model is unchanged"},
                           0.99, 0.99, None, accuracy_change=0.0)
    assert v["text"].startswith("PSR 99%: the backdoor survived; SSD selected no weights")
    lossy = unlearning_verdict("scrub", {}, 0.0, 0.99, None, accuracy_change=-0.06)
    assert lossy["removed"] is True and "clean accuracy fell 6.0 points" in lossy["text"]


def test_a_surviving_backdoor_comes_with_the_methods_known_limit():
    from deltainf_core.unlearning import UNLEARNERS
    from deltainf_core.unlearning.verdict import known_limit

    survived = unlearning_verdict("cf", {}, 0.96, 1.0, 0.0, accuracy_change=0.0)
    assert survived["removed"] is False
    assert survived["text"].startswith("PSR 96%: the backdoor survived; known limit: CF re-trains on the retained")
    # The run's own note comes first, the general limit last.
    ssd = unlearning_verdict("ssd", {"note": "SSD selected no weights"}, 0.99, 0.99)
    assert ssd["text"].index("SSD selected no weights") < ssd["text"].index("known limit: SSD dampens")
    weakened = unlearning_verdict("potion", {}, 0.40, 1.0, 0.0)
    assert "weakened but survived" in weakened["text"] and "known limit: Potion stops" in weakened["text"]
    # Removed, or nothing to measure: no excuse is offered.
    assert "known limit" not in unlearning_verdict("cf", {}, 0.01, 1.0, 0.0)["text"]
    assert "known limit" not in unlearning_verdict("cf", {}, None)["text"]
    # An unknown name (a result written by another version) still gets its verdict.
    assert unlearning_verdict("retired", {}, 0.9, 1.0)["text"] == "PSR 90%: the backdoor survived"
    # Every registered method states its own limit.
    assert all(known_limit(m) for m in UNLEARNERS)
