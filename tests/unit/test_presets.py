"""Saved sampling presets (issue 42): save, load, delete, share as a file; a bad file changes nothing."""

from __future__ import annotations

import json

import pytest

from playground import presets
from playground.controls import PARAM_NAMES
from tests.helpers import SAMPLING_DEFAULTS
from tests.refusals import REFUSED

VALUES = [SAMPLING_DEFAULTS[name] for name in PARAM_NAMES]


def test_save_load_delete_and_share(tmp_path, data_dir):
    creative = [{**SAMPLING_DEFAULTS, "temperature": 1.1, "top_p": 0.9, "stop": "END"}[n] for n in PARAM_NAMES]
    kept, picker, note = presets.save({}, "creative", *creative)
    assert picker["value"] == "creative" and "Saved" in note and kept["creative"]["temperature"] == 1.1
    loaded = dict(zip(PARAM_NAMES, presets.load(kept, "creative"), strict=False))
    assert (
        loaded["temperature"]["value"] == 1.1 and loaded["stop"]["value"] == "END" and loaded["top_p"]["value"] == 0.9
    )
    shared = presets.export(kept, "creative")
    data = json.loads(open(shared, encoding="utf-8").read())
    assert data["kind"] == presets.KIND and data["name"] == "creative"
    other, picker, note = presets.import_file({}, shared)  # another browser
    assert other == kept and picker["value"] == "creative" and "press Load" in note
    kept, picker, _ = presets.delete(kept, "creative")
    assert kept == {} and picker["choices"] == []


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"{broken", "preset.json is not valid JSON"),
        (b"\xff\xfe", "preset.json is not UTF-8 text"),
        (json.dumps({"kind": "something else", "settings": {}}).encode(), "not a preset file"),
        (json.dumps({"kind": presets.KIND, "name": "x", "settings": {"temperature": -3}}).encode(), "temperature"),
        (json.dumps({"kind": presets.KIND, "name": "x", "settings": {"evil": 1}}).encode(), "not a sampling parameter"),
        (json.dumps({"kind": presets.KIND, "name": "../../etc", "settings": {}}).encode(), "Name the preset"),
        (b"[" * 1000 + b"]" * 1000, "preset.json is nested deeper than 4 levels"),
        (b"{" + b'"a": 1, ' * 20_000 + b'"b": 2}', "larger than a preset"),
    ],
)
def test_a_bad_preset_file_changes_nothing(tmp_path, data_dir, content, reason):
    path = tmp_path / "preset.json"
    path.write_bytes(content)
    mine = {"mine": {"temperature": 0.5}}
    with pytest.raises(REFUSED, match=reason):
        presets.import_file(mine, str(path))
    assert mine == {"mine": {"temperature": 0.5}}


def test_names_and_values_are_checked(data_dir):
    with pytest.raises(REFUSED, match="Name the preset"):
        presets.save({}, "   ", *VALUES)
    bad = [{**SAMPLING_DEFAULTS, "top_p": 5}[n] for n in PARAM_NAMES]
    with pytest.raises(REFUSED, match="Top-p"):
        presets.save({}, "broken", *bad)
    with pytest.raises(REFUSED, match="Choose a saved preset"):
        presets.load({}, "missing")
    full = {f"p{i}": {} for i in range(presets.MAX_PRESETS)}
    with pytest.raises(REFUSED, match="At most 50 presets"):
        presets.save(full, "one more", *VALUES)
