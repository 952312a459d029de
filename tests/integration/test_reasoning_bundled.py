"""The bundled model under the three strategies: real outputs, a real program through the sandbox."""

from __future__ import annotations

import pytest

from pipelines.engine.sampling import SamplingParams
from pipelines.reasoning import solve, strategies

pytestmark = pytest.mark.integration


def test_bundled_model_writes_a_program_the_sandbox_runs(real_handle):
    question = "Mia has 12 stickers. She buys 3 packs with 5 stickers each. How many stickers does she have now?"
    results = {
        r.strategy: r
        for r in solve.solve(
            real_handle, question, strategies.load_all(), SamplingParams(temperature=0), gold=27, token_cap=60
        )
    }
    assert "The answer is" in results["direct"].output and results["direct"].answer is not None
    assert results["cot"].answer is not None  # the few-shot format is followed: a number comes out
    pal = results["pal"]
    assert "def solution" in pal.program
    assert pal.samples[0].run["ok"], pal.samples[0].run  # valid Python that returns a number, run in the sandbox
    assert isinstance(pal.answer, float)
