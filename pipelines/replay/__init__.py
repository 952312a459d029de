"""Replay capsules: a small JSON record of how a result was made, and its exact re-run.

`capsules` writes and checks them (what the model, adapter, engine, machine, sampler chain, seed,
prompt tokens and, per kind, the retrieval or reasoning settings were; a seal over it all);
`replay` makes the result again from one and says whether it matches token for token, and when
it cannot be expected to (another CPU kind, a remote server), why.
"""
