"""Text front-end: normalization, the reference cleaners, and the 148-symbol alphabet."""
from .cleaners import TextError
from .normalize import NORMALIZER_VERSION, normalize_text
from .sentences import sentence_ends, split_sentences
from .symbols import PAD_ID, prepare_text, sequence_to_text, symbols, text_to_sequence

# Names the cleaner pipeline whose output checkpoints were trained on; bump the number if
# text_to_sequence ever changes its ids for some input.
TEXT_FRONTEND_VERSION = "english_cleaners/1"

__all__ = [
    "NORMALIZER_VERSION",
    "PAD_ID",
    "TEXT_FRONTEND_VERSION",
    "TextError",
    "normalize_text",
    "prepare_text",
    "sequence_to_text",
    "sentence_ends",
    "split_sentences",
    "symbols",
    "text_to_sequence",
]
