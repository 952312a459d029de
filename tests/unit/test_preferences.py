"""The preference store: durable, idempotent, concurrent; rankings, exports, imports, stats."""

from __future__ import annotations

import json
import random
import threading

import pytest

from pipelines.engine.chat import Message
from pipelines.labels import preference_data, preference_stats, preferences
from pipelines.labels.preferences import ResponseDraft
from pipelines.store import db

PROMPT = [Message("user", "Name a colour.")]


@pytest.fixture(autouse=True)
def fresh_db(store_database):
    """Every test here runs on SQLite and on PostgreSQL (tests/conftest.py: store_database)."""
    yield


def item(
    n: int = 2, texts: list[str] | None = None, sources: list[str] | None = None, seed: int = 0
) -> preferences.ItemView:
    texts = texts or [f"answer {i}" for i in range(n)]
    sources = sources or [f"src{i}" for i in range(n)]
    drafts = [ResponseDraft(t, source=s, model="m") for t, s in zip(texts, sources, strict=False)]
    return preferences.create_item(PROMPT, drafts, rng=random.Random(seed))


def test_positions_are_shuffled_and_stored():
    orders = {tuple(r.text for r in item(4, seed=s).responses) for s in range(12)}
    assert len(orders) > 1  # display order is random
    stored = preferences.get_item(item(3, seed=1).id)
    assert [r.position for r in stored.responses] == [0, 1, 2]


def test_same_vote_twice_is_idempotent_and_votes_lock():
    it = item()
    first = preferences.submit_label(it.id, "ann", "A")
    again = preferences.submit_label(it.id, "ann", "A")
    assert first.created and not again.created
    with pytest.raises(preferences.PreferenceError, match="already voted"):
        preferences.submit_label(it.id, "ann", "B")
    assert len(preferences.get_item(it.id).labels) == 1


def test_ten_threads_fifty_votes_each_store_exactly_five_hundred():
    items = [item(seed=i) for i in range(50)]
    errors: list[BaseException] = []

    def annotate(worker: int) -> None:
        try:
            for it in items:
                choice = random.Random(worker * 1000 + hash(it.id) % 97).choice(["A", "B", "tie", "both_bad"])
                preferences.submit_label(it.id, f"annotator-{worker}", choice)
                preferences.submit_label(it.id, f"annotator-{worker}", choice)  # a double click
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=annotate, args=(w,)) for w in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = preference_stats.stats()
    assert stats["labels"] == 500 and all(n == 50 for n in stats["per_annotator"].values())


@pytest.mark.parametrize(
    "text, groups",
    [("B > A", [[1], [0]]), ("D > C > A = B", [[3], [2], [0, 1]]), ("a=b=c", [[0, 1, 2]]), ("C>B>A", [[2], [1], [0]])],
)
def test_ranking_text_is_parsed(text, groups):
    n = max(p for g in groups for p in g) + 1
    assert preferences.parse_ranking(text, max(n, 2)) == groups


@pytest.mark.parametrize("text", ["A > A", "A >", "A > E", "A", "B > C"])
def test_bad_rankings_are_refused(text):
    with pytest.raises(preferences.PreferenceError):
        preferences.parse_ranking(text, 3)


def test_rankings_expand_into_all_implied_pairs_and_ties_go_unpaired():
    four = item(4, texts=["w", "x", "y", "z"])
    by_letter = {r.letter: r.text for r in four.responses}
    preferences.submit_label(four.id, "ann", "ranking", ranking=preferences.parse_ranking("D > C > A = B", 4))
    tied = item(2, texts=["t1", "t2"])
    preferences.submit_label(tied.id, "ann", "tie")
    bad = item(2, texts=["b1", "b2"])
    preferences.submit_label(bad.id, "ann", "both_bad")
    single = preferences.create_item(PROMPT, [ResponseDraft("thumb", source="chat")])
    preferences.submit_label(single.id, "ann", "down")
    pairs, unpaired = preference_data.pairs_and_unpaired()
    got = {(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs}
    expected = {(by_letter["D"], by_letter[x]) for x in "CAB"} | {
        (by_letter["C"], by_letter["A"]),
        (by_letter["C"], by_letter["B"]),
    }
    assert got == expected and len(pairs) == 5  # A = B gives no pair
    labels = {u["completion"][0]["content"]: u["label"] for u in unpaired}
    assert labels == {"t1": True, "t2": True, "b1": False, "b2": False, "thumb": False}
    assert all(p["prompt"] == [{"role": "user", "content": "Name a colour."}] for p in pairs)


def test_export_import_round_trip_in_every_format(tmp_path):
    for i in range(6):
        it = item(texts=[f"good {i}", f"bad {i}"], seed=i)
        good = next(r for r in it.responses if r.text.startswith("good"))
        preferences.submit_label(it.id, "ann", good.letter)
    for fmt, name in (("jsonl", "p.jsonl"), ("parquet", "p.parquet"), ("dataset", "p_ds")):
        result = preference_data.export(tmp_path / name, fmt)
        assert result["rows"] == 6
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert set(rows[0]) == {"prompt", "chosen", "rejected", *preference_data.PROVENANCE_COLUMNS}
    assert rows[0]["chosen"][0]["content"].startswith("good") and rows[0]["annotator"] == "ann"
    assert rows[0]["drive"] is None and rows[0]["passed_gold"] is True and rows[0]["item_agreement"] is None
    assert preference_data.export(tmp_path / "u.jsonl", "unpaired")["rows"] == 0
    db.dispose_all()
    for source in ("p.jsonl", "p.parquet", "p_ds"):
        before = preference_stats.stats()["labels"]
        result = preference_data.import_file(tmp_path / source)
        assert result.imported == 6 and result.errors == []
        assert preference_stats.stats()["labels"] == before + 6
    again, _ = preference_data.pairs_and_unpaired()
    assert sum(p["chosen"][0]["content"].startswith("good") for p in again) == len(again) == 24


def test_import_reports_errors_by_line(tmp_path):
    lines = [
        json.dumps({"prompt": "Q?", "chosen": "yes", "rejected": "no"}),  # string form is accepted
        "{broken",
        json.dumps({"prompt": "Q?", "chosen": "yes"}),
        json.dumps({"prompt": [{"role": "wizard", "content": "x"}], "chosen": "a", "rejected": "b"}),
        json.dumps({"prompt": "Q?", "completion": "meh", "label": "maybe"}),
        json.dumps({"prompt": "Q?", "completion": "fine", "label": True}),
        json.dumps(
            {
                "chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "a"}],
                "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "b"}],
            }
        ),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines))
    result = preference_data.import_file(path)
    assert result.imported == 3
    assert [e["line"] for e in result.errors] == [2, 3, 4, 5]
    assert "not valid JSON" in result.errors[0]["error"] and "label" in result.errors[3]["error"]
    with pytest.raises(preferences.PreferenceError, match="unsupported file type"):
        preference_data.import_file(tmp_path / "x.csv")


def test_stats_measure_agreement_position_bias_and_rates():
    items = [item(seed=i) for i in range(4)]
    for it in items:
        preferences.submit_label(it.id, "alice", "A")
    preferences.submit_label(items[0].id, "bob", "A")
    preferences.submit_label(items[1].id, "bob", "B")
    preferences.submit_label(items[2].id, "bob", "tie")
    st = preference_stats.stats()
    assert st["labels"] == 7 and st["per_annotator"] == {"alice": 4, "bob": 3}
    assert st["agreement"] == pytest.approx(1 / 3) and st["agreement_pairs"] == 3
    assert st["left_wins"] == pytest.approx(5 / 6) and st["tie_rate"] == pytest.approx(1 / 7)


def test_leaderboard_ranks_the_source_that_wins():
    for i in range(12):
        it = item(texts=["strong", "weak"], sources=["tuned", "base"], seed=i)
        winner = next(r for r in it.responses if r.source == ("tuned" if i < 10 else "base"))
        preferences.submit_label(it.id, "ann", winner.letter)
    board = preference_stats.leaderboard()
    assert [row["source"] for row in board] == ["tuned", "base"]
    assert board[0]["wins"] == 10 and board[0]["losses"] == 2 and board[0]["rating"] > 1000 > board[1]["rating"]


def test_prompt_sets_draw_least_used_first():
    added = preferences.add_prompt_set(
        "demo", [[Message("user", f"q{i}")] for i in range(3)] + [[Message("user", "q0")]]
    )
    assert added == 3 and preferences.prompt_sets() == {"demo": 3}
    drawn = {preferences.draw_prompt("demo", random.Random(s))[0].content for s in range(3)}
    assert drawn == {"q0", "q1", "q2"}  # each used once before any repeats
    with pytest.raises(preferences.PreferenceError):
        preferences.draw_prompt("nope")


def test_bad_votes_are_refused():
    it = item()
    for kwargs, match in [
        ({"annotator": "", "choice": "A"}, "annotator"),
        ({"annotator": "x", "choice": "maybe"}, "unknown vote"),
        ({"annotator": "x", "choice": "up"}, "unknown vote|thumbs"),
        ({"annotator": "x", "choice": "A", "rationale": "x" * 5000}, "rationale"),
    ]:
        with pytest.raises(preferences.PreferenceError, match=match):
            preferences.submit_label(it.id, kwargs.pop("annotator"), kwargs.pop("choice"), **kwargs)
    with pytest.raises(preferences.PreferenceError, match="no item"):
        preferences.submit_label("missing", "x", "A")
    assert preferences.delete_item(it.id) and not preferences.delete_item(it.id)


def test_exported_pairs_train_in_plain_trl_reward_trainer(tmp_path, tokenizer):
    """The export is exactly what trl expects: RewardTrainer takes it with no changes."""
    import torch
    from datasets import load_dataset
    from transformers import LlamaConfig, LlamaForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    for i in range(8):
        it = item(texts=[f"helpful answer {i}", f"rude answer {i}"], seed=i)
        preferences.submit_label(it.id, "ann", next(r.letter for r in it.responses if r.text.startswith("helpful")))
    preference_data.export(tmp_path / "pairs.jsonl", "jsonl")
    dataset = load_dataset("json", data_files=str(tmp_path / "pairs.jsonl"), split="train")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    trainer = RewardTrainer(
        model=LlamaForSequenceClassification(config),
        args=RewardConfig(
            output_dir=str(tmp_path / "out"),
            max_steps=2,
            per_device_train_batch_size=4,
            report_to="none",
            bf16=False,
            use_cpu=True,
            save_strategy="no",
            gradient_checkpointing=False,
        ),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    assert trainer.train().global_step == 2


def test_push_to_hub_sends_pairs_and_unpaired_rows_as_separate_configs(monkeypatch):
    """Splits of one DatasetDict must share columns; a tie or thumbs label made every push fail before any upload."""
    from datasets import Dataset

    pushed: dict[str, Dataset] = {}

    def fake_push(self, repo_id, *, config_name="default", split=None, set_default=None, **kwargs):
        assert repo_id == "team/prefs" and split == "train"
        pushed[config_name] = self
        if set_default:
            pushed["(default)"] = config_name

    monkeypatch.setattr(Dataset, "push_to_hub", fake_push)
    preferences.submit_label(item(seed=1).id, "ann", "A")
    preferences.submit_label(item(seed=2).id, "ann", "tie")
    preferences.submit_label(item(seed=3).id, "ann", "both_bad")
    thumbs = preferences.create_item(PROMPT, [ResponseDraft("Blue.", source="chat", model="m")])
    preferences.submit_label(thumbs.id, "ann", "up")

    result = preference_data.push_to_hub("team/prefs")
    assert result["configs"] == {"pairs": 1, "unpaired": 5}
    assert pushed["(default)"] == "pairs"
    assert pushed["pairs"].column_names == ["prompt", "chosen", "rejected"]
    assert pushed["unpaired"].column_names == ["prompt", "completion", "label"]
    assert sorted(pushed["unpaired"]["label"]) == [False, False, True, True, True]


def test_push_to_hub_with_nothing_to_push_says_so(monkeypatch):
    with pytest.raises(preferences.PreferenceError, match="no labels"):
        preference_data.push_to_hub("team/prefs")


def test_an_empty_leaderboard_says_why():
    assert "no comparison votes yet" in preference_stats.leaderboard_gap()
    same = item(sources=["base", "base"], seed=4)
    preferences.submit_label(same.id, "ann", "A")
    assert preference_stats.leaderboard() == []
    assert "one source with each other (base)" in preference_stats.leaderboard_gap()
    mixed = item(sources=["base", "tutor"], seed=5)
    preferences.submit_label(mixed.id, "ann", "B")
    assert sorted(row["source"] for row in preference_stats.leaderboard()) == ["base", "tutor"]
