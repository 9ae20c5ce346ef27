"""Dates written as people write them ("3rd of March 2021", "03/03/21", "Mar 3, 21") and their ISO form
("2021-03-03"): the sequence-to-sequence task's data, its character vocabularies, and the dataset with its collate.

Sample `index` of a split is a function of (seed, split, index) alone, so any sample is made on demand, in any
order, by any process. Every day of the calendar belongs to one split (a hash of (seed, day)): the test split's
dates never appear in training, in any format, so its score measures generalisation, not memory.
"""
from __future__ import annotations

import datetime

import torch

from playground.data import mix_seeds

FIRST_DAY, LAST_DAY = datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)  # two-digit years: 50-99 are 19xx
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# Each field's text. Month-first with slashes (US), day-first with dots and dashes: the separator and the widths
# tell the formats apart, so every text names one date.
FORMATS = (
    "{dth} of {Month} {yyyy}",         # 3rd of March 2021
    "{mm}/{dd}/{yy}",                  # 03/03/21
    "{Mon} {d}, {yy}",                 # Mar 3, 21
    "{yyyy}-{m}-{d}",                  # 2021-3-3
    "{Weekday}, {Month} {d}, {yyyy}",  # Wednesday, March 3, 2021
    "{d} {Month} {yyyy}",              # 3 March 2021
    "{Month} {dth}, {yyyy}",           # March 3rd, 2021
    "{m}/{d}/{yyyy}",                  # 3/3/2021
    "{dd}.{mm}.{yyyy}",                # 03.03.2021
    "{yyyy}{mm}{dd}",                  # 20210303
    "{d} {Mon} {yy}",                  # 3 Mar 21
    "{Wkd} {d} {Mon} {yyyy}",          # Wed 3 Mar 2021
    "{yyyy}/{mm}/{dd}",                # 2021/03/03
    "the {dth} of {Month}, {yyyy}",    # the 3rd of March, 2021
    "{Mon} {dd} {yyyy}",               # Mar 03 2021
    "{dd}-{Mon}-{yy}",                 # 03-Mar-21
    "{Weekday} {dth} {Month} {yyyy}",  # Wednesday 3rd March 2021
    "{Wkd}, {Mon} {d} '{yy}",          # Wed, Mar 3 '21
)
LOWER, UPPER = 0.1, 0.1  # shares of samples written in lower case, in upper case


def ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def fields(date: datetime.date) -> dict[str, str]:
    """The text of every field a format may name, for `date`."""
    return {"d": str(date.day), "dd": f"{date.day:02}", "dth": ordinal(date.day), "m": str(date.month),
            "mm": f"{date.month:02}", "Month": MONTHS[date.month - 1], "Mon": MONTHS[date.month - 1][:3],
            "yy": f"{date.year % 100:02}", "yyyy": str(date.year), "Weekday": WEEKDAYS[date.weekday()],
            "Wkd": WEEKDAYS[date.weekday()][:3]}


def human(date: datetime.date, fmt: str, case: str = "") -> str:
    """`date` written in `fmt` (one of FORMATS), then in `case` ("", "lower" or "upper")."""
    text = fmt.format(**fields(date))
    return text.lower() if case == "lower" else text.upper() if case == "upper" else text


def split_days(seed: int, test_fraction: float) -> dict[str, list[datetime.date]]:
    """The calendar's days by split: each day is a test day with probability `test_fraction`, from (seed, day)."""
    days: dict[str, list[datetime.date]] = {"train": [], "test": []}
    threshold = int(test_fraction * 2**32)
    for ordinal_day in range(FIRST_DAY.toordinal(), LAST_DAY.toordinal() + 1):
        held_out = mix_seeds(seed, ordinal_day) & 0xFFFFFFFF < threshold
        days["test" if held_out else "train"].append(datetime.date.fromordinal(ordinal_day))
    return days


def sample(days: list[datetime.date], seed: int, split: str, index: int) -> tuple[str, str]:
    """(human text, ISO text) of sample `index` of `split`: a day of `days`, a format and a case, all drawn from
    one 63-bit hash of (seed, split, index) (a tenth of the cost of seeding a generator per sample)."""
    draw, day = divmod(mix_seeds(seed, split == "test", index), len(days))
    draw, fmt = divmod(draw, len(FORMATS))
    share = draw % 1000 / 1000
    case = "lower" if share < LOWER else "upper" if share < LOWER + UPPER else ""
    return human(days[day], FORMATS[fmt], case), days[day].isoformat()


class Vocabulary:
    """Characters as token ids, after the special tokens (PAD is always 0: what padding is filled with)."""

    def __init__(self, chars: str, specials: tuple[str, ...]):
        self.tokens = (*specials, *chars)
        self.ids = {token: i for i, token in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str, eos: bool = False) -> list[int]:
        """Token ids of `text` (a character outside the vocabulary is <unk> where there is one)."""
        unknown = self.ids.get("<unk>")
        ids = [self.ids.get(char, unknown) for char in text]
        if None in ids:
            raise ValueError(f"{text!r} holds characters outside the vocabulary: {sorted(set(text) - set(self.ids))}")
        return ids + [self.ids["<eos>"]] if eos else ids

    def decode(self, ids: list[int]) -> str:
        """The text of `ids` up to the first <eos>, special tokens left out."""
        chars = []
        for i in ids:
            token = self.tokens[i]
            if token == "<eos>":
                break
            chars.append(token if len(token) == 1 else "")
        return "".join(chars)


PAD = 0
SOURCE = Vocabulary(" ',-./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", ("<pad>", "<unk>"))
TARGET = Vocabulary("-0123456789", ("<pad>", "<bos>", "<eos>"))
BOS, EOS = TARGET.ids["<bos>"], TARGET.ids["<eos>"]


class DatesDataset(torch.utils.data.Dataset):
    """`size` samples of `split` ("train" or "test"), made on demand. An item is (source ids, target ids ending in
    <eos>), lists of ints; `collate` pads a batch of them into the network's inputs and the loss's labels."""

    def __init__(self, split: str, size: int, seed: int = 0, test_fraction: float = 0.1):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.split, self.size, self.seed = split, size, seed
        self.days = split_days(seed, test_fraction)[split]

    def __len__(self) -> int:
        return self.size

    def text(self, index: int) -> tuple[str, str]:
        """(human text, ISO date) of sample `index`."""
        if not 0 <= index < self.size:
            raise IndexError(f"sample {index} of a {self.split} split of {self.size}")
        return sample(self.days, self.seed, self.split, index)

    def __getitem__(self, index: int) -> tuple[list[int], list[int]]:
        source, target = self.text(index)
        return SOURCE.encode(source), TARGET.encode(target, eos=True)

    @staticmethod
    def collate(items: list[tuple[list[int], list[int]]]) -> tuple[dict, tuple[torch.Tensor, torch.Tensor]]:
        """(inputs, labels) of a batch, padded with PAD to its longest: inputs {"source", "source_lengths",
        "decoder_input"} (the target shifted right after <bos>: teacher forcing), labels (target, target_lengths)."""
        sources, targets = zip(*items)
        source, source_lengths = padded(sources)
        target, target_lengths = padded(targets)
        decoder_input = torch.cat([torch.full((len(items), 1), BOS), target[:, :-1]], dim=1)
        decoder_input[decoder_input == EOS] = PAD  # <eos> is never an input: the step after it is padding
        return ({"source": source, "source_lengths": source_lengths, "decoder_input": decoder_input},
                (target, target_lengths))


def padded(sequences: tuple[list[int], ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch of `sequences` padded with PAD to the longest, their lengths)."""
    lengths = [len(s) for s in sequences]
    width = max(lengths)
    return torch.tensor([s + [PAD] * (width - len(s)) for s in sequences]), torch.tensor(lengths)
