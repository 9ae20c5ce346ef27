"""A generated sentiment language in which word order decides the label, and the vocabulary that encodes it.

A clause says something of a subject: "the plot was good", "the acting was not very good", "the music was hardly
terrible". Its score: an adjective is mild (±1: good, bad) or strong (±2: excellent, awful); an intensifier
("very", "really", "extremely") makes it one stronger; a negator ("not", "hardly", "never") flips its sign and
leaves a mild ±1 ("not bad" is mildly positive, "not very good" mildly negative). A sentence is one clause, or two
joined: "A but B" and "although A , B" mean B; "A and B" means the stronger of the two (they never tie). The label
is 1 (positive) or 0 (negative).

So a bag of words cannot tell which adjective a negator or intensifier belongs to, nor which clause follows "but":
it sees "not", "good" and "bad" in both "the plot was not good but the acting was bad" (negative) and "the plot
was good but the acting was not bad" (positive). Every sentence depends only on (seed, index).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SUBJECTS = ("the movie", "the film", "the plot", "the acting", "the music", "the story", "the ending", "the cast",
            "the script", "the dialogue", "the soundtrack", "the director")
VERBS = ("was", "is", "seemed", "felt", "looked")
ADJECTIVES = {  # word: score
    "good": 1, "nice": 1, "fine": 1, "decent": 1, "pleasant": 1,
    "excellent": 2, "wonderful": 2, "brilliant": 2, "superb": 2,
    "bad": -1, "poor": -1, "dull": -1, "weak": -1, "boring": -1,
    "awful": -2, "terrible": -2, "horrible": -2, "dreadful": -2,
}
INTENSIFIERS = ("very", "really", "extremely", "truly")
NEGATORS = ("not", "hardly", "never")
OPENERS = ("", "", "", "honestly ,", "overall ,", "i think", "to be fair ,")
FORMS = ("one", "but", "although", "and")
PAD, UNKNOWN = "<pad>", "<unk>"


@dataclass(frozen=True)
class Clause:
    """A clause, "<subject> <verb> [negator] [intensifier] <adjective>", and what it means."""

    subject: str
    verb: str
    adjective: str
    intensifier: str = ""
    negator: str = ""

    @property
    def words(self) -> list[str]:
        return [*self.subject.split(), self.verb, *filter(None, (self.negator, self.intensifier)), self.adjective]

    @property
    def score(self) -> int:
        """±1 mild, ±2 strong, ±3 intensified strong; negated: the opposite sign, mild."""
        score = ADJECTIVES[self.adjective]
        if self.intensifier:
            score += 1 if score > 0 else -1
        if self.negator:
            score = -1 if score > 0 else 1
        return score


@dataclass(frozen=True)
class Sentence:
    """One clause ("one"), or two joined by "but", "although" or "and", after an optional opener."""

    first: Clause
    form: str = "one"
    second: Clause | None = None
    opener: str = ""

    @property
    def text(self) -> str:
        if self.form == "one":
            words = self.first.words
        elif self.form == "although":
            words = ["although", *self.first.words, ",", *self.second.words]
        else:
            words = [*self.first.words, self.form, *self.second.words]
        return " ".join([*self.opener.split(), *words])

    @property
    def label(self) -> int:
        """1 positive, 0 negative: the clause after "but" or after "although A ,", the stronger one of "and"."""
        if self.form == "one":
            deciding = self.first.score
        elif self.form == "and":
            deciding = max(self.first.score, self.second.score, key=abs)
        else:
            deciding = self.second.score
        return int(deciding > 0)


def draw_clause(rng: np.random.Generator) -> Clause:
    return Clause(str(rng.choice(SUBJECTS)), str(rng.choice(VERBS)), str(rng.choice(list(ADJECTIVES))),
                  str(rng.choice(INTENSIFIERS)) if rng.random() < 0.4 else "",
                  str(rng.choice(NEGATORS)) if rng.random() < 0.45 else "")


def draw(seed: int, index: int) -> Sentence:
    """Sentence `index` of the language drawn with `seed` (a function of the two alone)."""
    rng = np.random.default_rng([seed, index])
    opener, first = str(rng.choice(OPENERS)), draw_clause(rng)
    form = str(rng.choice(FORMS, p=(0.3, 0.25, 0.2, 0.25)))
    if form == "one":
        return Sentence(first, opener=opener)
    second = draw_clause(rng)
    while form == "and" and abs(second.score) == abs(first.score):  # "and": the stronger decides, so no tie
        second = draw_clause(rng)
    return Sentence(first, form, second, "" if form == "although" else opener)


def sentence(seed: int, index: int) -> tuple[str, int]:
    """(text, label) of sentence `index` of the language drawn with `seed`."""
    drawn = draw(seed, index)
    return drawn.text, drawn.label


def words() -> list[str]:
    """Every word the language uses, sorted."""
    found = {w for phrase in SUBJECTS + VERBS + INTENSIFIERS + NEGATORS + OPENERS for w in phrase.split()}
    return sorted(found | set(ADJECTIVES) | set(FORMS[1:]) | {","})


class Vocabulary:
    """Words to ids and back: 0 is padding, 1 an unknown word, then the language's words in sorted order."""

    def __init__(self, known: list[str] | None = None):
        self.itos = [PAD, UNKNOWN, *(known if known is not None else words())]
        self.stoi = {word: i for i, word in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (split on spaces; an unknown word is 1)."""
        return [self.stoi.get(word, 1) for word in text.split()]

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.itos[i] for i in ids if i != 0)
