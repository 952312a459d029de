"""Every CLI command fed bad files and out-of-range numbers: a one-line message, a non-zero exit, nothing lost.

Before the table runs a label is stored; afterwards it is still there, so no refused command
touched what was saved.
"""

from __future__ import annotations

import pytest

from pipelines.cli import main
from pipelines.labels import preferences

BINARY = b"\xff\xfe\x00not text\n"


@pytest.fixture
def bad_files(tmp_path):
    files = {
        "binary": tmp_path / "binary.jsonl",
        "malformed": tmp_path / "malformed.jsonl",
        "empty": tmp_path / "empty.jsonl",
        "wrong_columns": tmp_path / "columns.jsonl",
        "csv": tmp_path / "table.csv",
        "missing": tmp_path / "does-not-exist.jsonl",
        "python": tmp_path / "prog.py",
        "deep": tmp_path / "deep.jsonl",
        "deep_json": tmp_path / "deep.json",
    }
    files["binary"].write_bytes(BINARY)
    files["malformed"].write_text('{"prompt": "unterminated\n')
    files["empty"].write_text("")
    files["wrong_columns"].write_text('{"colour": "blue"}\n')
    files["csv"].write_text('a,b\n"unterminated,1\n')
    files["python"].write_text("def solution(:\n")
    files["deep"].write_text("[" * 100_000 + "]" * 100_000 + "\n")  # nested 100,000 deep: the only row
    files["deep_json"].write_text("[" * 100_000 + "]" * 100_000)
    return files


CASES = [
    ["prefs", "import", "{binary}"],
    ["prefs", "import", "{malformed}"],
    ["prefs", "import", "{missing}"],
    ["prefs", "export", "--format", "nonsense", "--out", "{missing}"],
    ["reward", "train", "--data", "{empty}", "--out", "rm"],
    ["reward", "train", "--data", "{wrong_columns}", "--out", "rm"],
    ["reward", "train", "--data", "{binary}", "--out", "rm", "--lr", "-1"],
    ["reward", "eval", "--model", "missing", "--data", "{malformed}"],
    ["finetune", "--data", "{binary}", "--out", "ft"],
    ["finetune", "--data", "{csv}", "--out", "ft"],
    ["finetune", "--data", "{wrong_columns}", "--out", "ft", "--lora-r", "-3"],
    ["rag", "ingest", "--collection", "docs", "{missing}"],
    ["rag", "ingest", "--collection", "../escape", "{csv}"],
    ["rag", "query", "--collection", "missing", "--question", "hi", "--no-generate"],
    ["rag", "eval", "--collection", "missing", "--questions", "{binary}"],
    ["reason", "bench", "--data", "{malformed}"],
    ["reason", "run", "--question", "   "],
    ["sandbox", "run", "{missing}"],
    ["align", "dpo", "--data", "{binary}", "--out", "a"],
    ["align", "rloo", "--prompts", "{empty}", "--reward-model", "missing", "--out", "a"],
    ["align", "eval", "--adapter", "missing", "--reward-model", "missing", "--prompts", "{malformed}"],
    ["generate", "--prompt", "hi", "--max-new-tokens", "-5"],
    ["chat", "--messages", "{binary}"],
    ["prefs", "import", "{deep}"],
    ["finetune", "--data", "{deep}", "--out", "ft"],
    ["reward", "train", "--data", "{deep}", "--out", "rm"],
    ["rag", "eval", "--collection", "missing", "--questions", "{deep}"],
    ["reason", "bench", "--data", "{deep}"],
    ["align", "rloo", "--prompts", "{deep}", "--reward-model", "missing", "--out", "a"],
    ["chat", "--messages", "{deep_json}"],
]


@pytest.mark.parametrize("argv", CASES, ids=[" ".join(c[:2]) + f" #{i}" for i, c in enumerate(CASES)])
def test_bad_cli_input_is_one_clear_line(tiny_model_env, use_tiny, bad_files, capsys, argv):
    kept = preferences.create_item(
        [{"role": "user", "content": "keep me"}], [preferences.ResponseDraft("a"), preferences.ResponseDraft("b")]
    )
    preferences.submit_label(kept.id, "keeper", "A")
    args = [part.format(**{k: str(v) for k, v in bad_files.items()}) for part in argv]
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse refuses some values itself
        code = exit_.code
    captured = capsys.readouterr()
    assert code not in (0, None), captured.out
    err = captured.err.strip()
    assert err, "no message on stderr"
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert len(last) < 600 and ("error" in last.lower() or ":" in last)
    assert [label.annotator for label in preferences.get_item(kept.id).labels] == ["keeper"]
