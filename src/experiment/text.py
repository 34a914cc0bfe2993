"""The language-model example's text, made from the seed (no download): sentences of a small grammar.

The grammar has structure a small model can learn (who does what, a clause that refers back,
punctuation), so validation perplexity falls within a minute on two CPU cores. Text is read one
character at a time: the vocabulary is the grammar's alphabet, fixed by the grammar itself, so a
model's size follows from the data without generating it (:meth:`TextData.model_kwargs`).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from torch.utils.data import Dataset

from experiment.data import Items, Streams
from repro import Range, TokenWindows

SUBJECTS = (
    "the cat", "a dog", "the old man", "my sister", "the bird", "a child", "the farmer",
    "our teacher", "the fox", "a sailor",
)  # fmt: skip
VERBS = ("sees", "likes", "finds", "follows", "watches", "hears", "paints", "carries")
OBJECTS = (
    "the ball", "a red box", "the river", "some bread", "the moon", "a small boat",
    "the garden", "an apple", "the lamp", "a green hat",
)  # fmt: skip
WHEN = ("today", "at night", "in the morning", "again", "slowly", "every day")
LINKS = ("and then", "because", "while", "but")
#: Every character the grammar can write: the vocabulary, in a fixed order.
ALPHABET = "".join(sorted(set(" ,.\n" + "".join(SUBJECTS + VERBS + OBJECTS + WHEN + LINKS))))


def sentence(rng: np.random.Generator) -> str:
    """One sentence: a clause, sometimes a time, sometimes a second clause joined by a link."""

    def pick(options: tuple[str, ...]) -> str:
        return options[int(rng.integers(len(options)))]

    subject = pick(SUBJECTS)
    text = f"{subject} {pick(VERBS)} {pick(OBJECTS)}"
    if rng.random() < 0.5:
        text += f" {pick(WHEN)}"
    if rng.random() < 0.4:
        # the second clause refers back to the first one's subject: "it"/"they" are not used, the
        # subject repeats, which a model can learn to copy
        text += f", {pick(LINKS)} {subject} {pick(VERBS)} {pick(OBJECTS)}"
    return text + ".\n"


def corpus(rng: np.random.Generator, characters: int) -> str:
    """At least ``characters`` characters of sentences, cut to exactly that many."""
    parts, size = [], 0
    while size < characters:
        parts.append(sentence(rng))
        size += len(parts[-1])
    return "".join(parts)[:characters]


class TextData:
    """Character-level text of a seeded grammar, cut into windows of ``context`` characters."""

    def __init__(
        self,
        train_chars: Items = 200_000,
        val_chars: Items = 20_000,
        context: Annotated[int, Range(2, 4096)] = 64,
    ) -> None:
        self.train_chars, self.val_chars, self.context = train_chars, val_chars, context
        self.index = {c: i for i, c in enumerate(ALPHABET)}

    @property
    def vocab_size(self) -> int:
        return len(ALPHABET)

    def model_kwargs(self) -> dict[str, Any]:
        """What the model's size takes from the data (the context length is in the YAML: ``${data.context}``)."""
        return {"vocab_size": self.vocab_size}

    def encode(self, text: str) -> np.ndarray:
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            raise ValueError(f"characters outside the vocabulary: {''.join(unknown)!r}")
        return np.array([self.index[c] for c in text], dtype=np.int64)

    def decode(self, tokens: Any) -> str:
        return "".join(ALPHABET[int(t)] for t in tokens)

    def tokens(self, rng: Streams) -> tuple[np.ndarray, np.ndarray]:
        """The training and validation token sequences, from their own named streams."""
        train = self.encode(corpus(rng("data.train"), self.train_chars))
        val = self.encode(corpus(rng("data.val"), self.val_chars))
        return train, val

    def build(self, rng: Streams) -> tuple[Dataset, Dataset]:
        train, val = self.tokens(rng)
        self._contents = {"train": train, "val": val}
        return TokenWindows(train, self.context), TokenWindows(val, self.context)

    def contents(self) -> dict[str, np.ndarray]:
        """The token sequences :meth:`build` made, by name: the run records their sha256."""
        return self._contents
