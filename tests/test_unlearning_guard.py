"""The epoch keeper SCRUB and Bad Teacher share: last epoch within budget, else the input model."""

from __future__ import annotations

import torch
from torch import nn

from deltainf_core.unlearning.guard import LastGoodEpoch


def _model(value: float) -> nn.Module:
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(value)
        model.bias.fill_(value)
    return model


def test_keeps_the_last_epoch_within_budget_and_says_so():
    keeper, student, teacher = LastGoodEpoch("SCRUB", budget=0.02), _model(0.0), _model(-1.0)
    for epoch, drop in enumerate([0.01, 0.015, 0.05], start=1):
        with torch.no_grad():
            student.weight.fill_(float(epoch))
        keeper.record(student, drop, epoch)
    note = keeper.restore(student, teacher, epochs=3)
    assert keeper.epoch == 2 and keeper.drops == [0.01, 0.015, 0.05]
    assert torch.all(student.weight == 2.0)
    assert note == "SCRUB kept epoch 2 of 3: later epochs cost retained accuracy"


def test_returns_the_input_model_when_no_epoch_passed():
    keeper, student, teacher = LastGoodEpoch("Bad Teacher", budget=0.02), _model(5.0), _model(-1.0)
    keeper.record(student, 0.3, 1)
    note = keeper.restore(student, teacher, epochs=1)
    assert torch.equal(student.weight, teacher.weight) and torch.equal(student.bias, teacher.bias)
    assert note is not None and note.startswith("Bad Teacher lost more than 2 points")


def test_the_final_epoch_within_budget_needs_no_note():
    keeper, student = LastGoodEpoch("SCRUB", budget=0.02), _model(3.0)
    keeper.record(student, -0.01, 1)
    assert keeper.restore(student, _model(0.0), epochs=1) is None
    assert torch.all(student.weight == 3.0)
