"""The default voice's corpus recipe (recipes/slt/build_corpus.py): the items it asks the teacher to read."""
import json
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from corpus_recipe import recipe  # noqa: E402
from test_voice import SHORT_INPUTS  # noqa: E402

TRANSCRIPTS = ["LJ1|Hi there, he said; no one was at the inn.", "LJ2|Go to the mill, Jr., and see the old man.",
               "LJ3|Yes. The sum was ten pounds, all in gold!"]


def test_one_word_items_are_short_words_ended_by_a_mark_and_leave_the_tested_words_out(tmp_path):
    transcripts = tmp_path / "train.txt"
    transcripts.write_text("\n".join(TRANSCRIPTS) + "\n", encoding="utf-8")
    items = recipe.read_words(transcripts, 100, seed=7)
    words = [item.text[:-1].lower() for item in items]
    assert sorted(words) == ["and", "at", "gold", "he", "in", "inn", "man", "mill", "old", "one", "said", "sum", "ten",
                            "the", "to", "was"]  # not "hi", "no", "go", "see", "yes", "all" (held out), "jr"
    assert all(item.text[-1] in ".!?" and item.text[0].isupper() for item in items)
    assert all(item.id == f"word_{word}" and item.label == word + item.text[-1] for item, word in zip(items, words))
    held_out = {word.strip(".!?").lower() for text in SHORT_INPUTS for word in text.split()} - {"42"}
    assert held_out <= recipe.HELD_OUT_WORDS  # "hi", "no", "yes", "go", "all", ...: never taught directly
    assert [i.text for i in recipe.read_words(transcripts, 5, seed=7)] == [i.text for i in items[:5]]
    assert [i.text for i in recipe.read_words(transcripts, 100, seed=8)] != [i.text for i in items]


def test_phone_timings_gather_festivals_segments_of_each_clip(tmp_path):
    (tmp_path / "phones").mkdir()
    # What the recipe's Festival script writes per clip: "phone end_seconds word" ("0": a pause).
    (tmp_path / "phones" / "LJ1_0.phones").write_text("pau 0.175000 0\nhh 0.230000 _8\nay 0.410000 _8\n"
                                                      "pau 0.550000 0\n")
    (tmp_path / "phones" / "word_hi.phones").write_text("hh 0.100000 _3\nay 0.300000 _3\n")
    phrases = [recipe.Phrase("LJ1_0", "Hi,", "hi,"), recipe.Phrase("word_hi", "Hi.", "hi.")]
    recipe.write_phone_timings(tmp_path, phrases)
    lines = (tmp_path / "phone_timings.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"id": "LJ1_0", "segments": [["pau", 0.175, "0"], ["hh", 0.23, "_8"], ["ay", 0.41, "_8"], ["pau", 0.55, "0"]]},
        {"id": "word_hi", "segments": [["hh", 0.1, "_3"], ["ay", 0.3, "_3"]]}]
    # A damaged file is named with its line and what to do.
    (tmp_path / "phones" / "word_hi.phones").write_text("hh 0.100000 _3\nay 0.3\n")
    with pytest.raises(SystemExit, match=r"word_hi.phones:2: expected 'phone end_seconds word' .*run build_corpus"):
        recipe.write_phone_timings(tmp_path, phrases)
