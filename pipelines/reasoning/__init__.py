"""Reasoning strategies side by side: direct, chain of thought, program-aided (PAL).

Modules: `extract` (a number out of free text), `strategies` (few-shot prompts kept as data in
`assets/reasoning/`), `solve` (all strategies on one question in one batch, with optional
self-consistency voting and PAL programs run in `pipelines.sandbox`), `benchmark` (accuracy over
a problem set, saved runs).
"""
