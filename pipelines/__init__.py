"""The playground's engine, in wings: each wing a subpackage named for what it does.

Nothing in this package imports gradio; every module is usable from a notebook or the CLI.
A wing imports only wings below it in `WINGS` (and the base modules at this level: config,
errors, knobs, access, gpu), so each can be read, tested and loaded without the ones above it.
`docs/architecture.md` draws the picture; tests/unit/test_module_map.py holds the rule.
"""

# lowest first: a wing may import any wing to its left, never one to its right
WINGS = (
    "store",
    "sandbox",
    "engine",
    "labels",
    "train",
    "inside",
    "rag",
    "reasoning",
    "lessons",
    "agents",
    "replay",
    "cli",
)
