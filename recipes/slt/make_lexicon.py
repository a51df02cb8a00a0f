"""Build tacoglow's pronunciation lexicon (tacoglow/text/lexicon.tsv.gz) from Festival's CMU lexicon.

    python recipes/slt/make_lexicon.py [/usr/share/festival/dicts/cmu/cmudict-0.4.out] [OUT]

The source is Debian's `festlex-cmu` (CMUDICT 0.4 as Festival uses it), the lexicon the teacher voice of
`recipes/slt` reads with, so a word's ARPAbet here is what the corpus audio says. Changes made (marked as
such in the output's header, as the licence asks): Festival's phone names become NVIDIA's ARPAbet symbols
(upper case; Festival's schwa "ax" is "AH"), each vowel takes its syllable's stress digit, and words with
more than one entry (homographs told apart by part of speech, e.g. "live", "read") are left out, so that
the model reads them from their spelling. Output: one "word<TAB>PHONES" line per word, sorted, gzip.
"""
from __future__ import annotations

import gzip
import re
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCE = Path("/usr/share/festival/dicts/cmu/cmudict-0.4.out")
OUT = REPO / "tacoglow" / "text" / "lexicon.tsv.gz"
VOWELS = {"aa", "ae", "ah", "ao", "aw", "ax", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy", "uh", "uw"}
ENTRY = re.compile(r'^\("((?:[^"\\]|\\.)*)" (\S+) (.*)\)\s*$')
SYLLABLE = re.compile(r"\(\(([^()]*)\) (\d)\)")
WORD = re.compile(r"^[a-z]+(?:'[a-z]+)*$")

HEADER = """# tacoglow pronunciation lexicon: word<TAB>ARPAbet, built by recipes/slt/make_lexicon.py.
# Modified from Festival's CMU lexicon (Debian festlex-cmu, cmudict-0.4.out): phone names mapped to
# ARPAbet, stress digits moved onto vowels, homographs removed. Its notice follows.
#
# American English Lexicon and letter to sound rules based on CMUDICT 0.4.
#                Centre for Speech Technology Research
#                     University of Edinburgh, UK
#                       Copyright (c) 1996,1997
#                        All Rights Reserved.
# Permission is hereby granted, free of charge, to use and distribute this software and its
# documentation without restriction, including without limitation the rights to use, copy, modify,
# merge, publish, distribute, sublicense, and/or sell copies of this work, and to permit persons to
# whom this work is furnished to do so, subject to the following conditions:
#  1. The code must retain the above copyright notice, this list of conditions and the following
#     disclaimer.
#  2. Any modifications must be clearly marked as such.
#  3. Original authors' names are not deleted.
#  4. The authors' names are not used to endorse or promote products derived from this software
#     without specific prior written permission.
# THE UNIVERSITY OF EDINBURGH AND THE CONTRIBUTORS TO THIS WORK DISCLAIM ALL WARRANTIES WITH REGARD TO
# THIS SOFTWARE, INCLUDING ALL IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS, IN NO EVENT SHALL THE
# UNIVERSITY OF EDINBURGH NOR THE CONTRIBUTORS BE LIABLE FOR ANY SPECIAL, INDIRECT OR CONSEQUENTIAL
# DAMAGES OR ANY DAMAGES WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN ACTION
# OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF OR IN CONNECTION WITH THE USE OR
# PERFORMANCE OF THIS SOFTWARE.
"""


def arpabet(body: str) -> str:
    """Festival's syllables, e.g. '((dh ax) 0) ((k ae t) 1)', as 'DH AH0 K AE1 T'."""
    phones = []
    for syllable, stress in SYLLABLE.findall(body):
        for phone in syllable.split():
            name = "ah" if phone == "ax" else phone
            phones.append(name.upper() + (stress if phone in VOWELS else ""))
    return " ".join(phones)


def main(source: Path = SOURCE, out: Path = OUT) -> None:
    entries: dict[str, set[str]] = defaultdict(set)
    for line in source.read_text(encoding="latin-1").splitlines():
        match = ENTRY.match(line)
        if match is None:
            continue
        word, _pos, body = match.groups()
        phones = arpabet(body)
        if WORD.match(word) and phones:
            entries[word].add(phones)
    kept = {w: next(iter(p)) for w, p in entries.items() if len(p) == 1}
    with gzip.open(out, "wt", encoding="utf-8", compresslevel=9, newline="\n") as f:
        f.write(HEADER)
        for word in sorted(kept):
            f.write(f"{word}\t{kept[word]}\n")
    print(f"{out}: {len(kept)} words ({len(entries) - len(kept)} homographs left out), "
          f"{out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:3]))
