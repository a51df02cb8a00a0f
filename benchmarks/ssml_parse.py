"""How long `tacoglow.ssml.parse_ssml` takes on the largest documents it reads (1 MiB of each kind of markup), and
how soon it refuses a 10 MB document and a billion-laughs one. Prints a Markdown table.

    python benchmarks/ssml_parse.py
"""
from __future__ import annotations

import logging
import time

from tacoglow.ssml import MAX_SSML_BYTES, SSMLError, parse_ssml

# Ten levels of ten: expanded, "lol" 10**9 times (3 GB); refused at its DTD, before any expansion.
BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE speak [<!ENTITY l0 "lol">'
                  + "".join(f'<!ENTITY l{k} "{("&l%d;" % (k - 1)) * 10}">' for k in range(1, 10))
                  + "]><speak>&l9;</speak>")


def filled(unit: str) -> str:
    """A <speak> document of ``unit`` repeated up to the size limit."""
    return "<speak>" + unit * ((MAX_SSML_BYTES - 20) // len(unit.encode())) + "</speak>"


def main() -> None:
    logging.disable(logging.WARNING)  # the unknown tags' warnings
    cases = {
        "plain words": filled("word "),
        "<sub> in a row": filled('<sub alias="x">y</sub>'),
        "1 ms breaks": filled('<break time="1ms"/>a'),
        "<say-as cardinal>": filled('<say-as interpret-as="cardinal">1234</say-as> '),
        "<prosody rate> in a row": filled('<prosody rate="90%">a</prosody>'),
        "unknown tags": filled("<foo>a</foo>"),
        "10 MB (refused)": "<speak>" + "word " * (2 << 20) + "</speak>",
        "billion laughs (refused)": BILLION_LAUGHS,
    }
    print("| document | bytes | segments | seconds |\n|---|---|---|---|")
    for name, document in cases.items():
        start = time.perf_counter()
        try:
            outcome: object = len(parse_ssml(document).segments)
        except SSMLError:
            outcome = "SSMLError"
        print(f"| {name} | {len(document.encode()):,} | {outcome} | {time.perf_counter() - start:.3f} |")


if __name__ == "__main__":
    main()
