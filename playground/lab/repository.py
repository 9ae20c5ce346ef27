"""Reading experiments back, for notebooks and `playground runs`: it is all []-indexing.

    repo = ExperimentRepository("runs/")          # or "s3://bucket/prefix"; default $PLAYGROUND_RUNS or ./runs
    repo[:]                                       # every experiment, oldest first
    exp = repo["202611221530-k3J9"]               # a tag, or a prefix of one that is unique
    exp.list_artifacts(); exp["train.csv"]        # a DataFrame indexed by epoch; "opts.json" -> dict
    repo.meld_csv({tag_a: "lr 0.1", tag_b: "lr 0.01"}, "train.csv", "train_loss")
    repo.diff(tag_a, tag_b)                       # {"model_param.base_learning_rate": (0.1, 0.01)}

Nothing is cached: every access reads the files again, so a running experiment shows what it has written so far.
pandas is imported when a CSV is read; torch when a checkpoint is.
"""
from __future__ import annotations

import difflib
import hashlib
import io
import json
import logging
from typing import Any, Union

from playground.errors import CheckpointError, DataError, NotFound
from playground.lab import status
from playground.lab.store import Store
from playground.lab.tags import runs_root
from playground.opts import flatten

ABSENT = "<absent>"
TEXT_SUFFIXES = (".txt", ".git-patch", ".patch", ".sha256", ".log", ".md")
NOT_METRICS = ("epoch", "iteration", "date", "secs_per_train", "samples_per_sec", "learning_rate")
UNREADABLE = "unreadable"
log = logging.getLogger(__name__)





def read_csv(data: bytes, path: str = "the CSV") -> Any:
    """A time-series CSV as a DataFrame indexed by its first column; a half-written last line is left out. One
    that is not a CSV (binary garbage, ragged rows) is a DataError naming `path`."""
    import pandas as pd

    data = data[:data.rfind(b"\n") + 1]
    if not data.strip():
        return pd.DataFrame()
    try:
        frame = pd.read_csv(io.BytesIO(data), index_col=0)
    except (UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(f"{path}: not a readable CSV ({type(e).__name__}: {' '.join(str(e).split())}); restore the "
                        "file or delete its experiment") from None
    if "date" in frame.columns:
        frame["date"] = pd.to_datetime(frame["date"], utc=True, errors="coerce")
    return frame


class Experiment:
    """One experiment: its tag, status and artifacts (files of its folder), loaded by type on indexing."""

    def __init__(self, store: Store, tag: str):
        self.store, self.tag = store, tag

    def __repr__(self) -> str:
        try:
            current = self.status
        except DataError:  # shown, not raised: a list of experiments must print whatever one of them holds
            current = UNREADABLE
        return f"<Experiment: {self.tag} {current}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Experiment) and (other.store.root, other.tag) == (self.store.root, self.tag)

    def __hash__(self) -> int:
        return hash((self.store.root, self.tag))

    @property
    def location(self) -> str:
        """The experiment's folder or URL."""
        return f"{self.store.root.rstrip('/')}/{self.tag}"

    @property
    def info(self) -> dict:
        """status.json as written (an experiment from before the lab book has only its tag)."""
        try:
            return status.parse(f"{self.location}/{status.FILE}", self.store.read(self.tag, status.FILE))
        except FileNotFoundError:
            return {"tag": self.tag, "status": "unknown", "attempts": []}

    @property
    def opts(self) -> dict:
        """opts.json ({} when there is none): a DataError naming it when it is not a tree of opts sections."""
        try:
            tree = self["opts.json"]
        except NotFound:
            return {}
        if not isinstance(tree, dict) or not all(isinstance(section, dict) for section in tree.values()):
            raise DataError(f"{self.location}/opts.json: not opts (expected a JSON object of sections such as "
                            f'"model": {{...}}, got {json.dumps(tree)[:40]}); restore the file or delete its '
                            "experiment")
        return tree

    @property
    def status(self) -> str:
        """queued, running, complete, failed, interrupted, or killed (running, but its process is gone)."""
        return status.effective(self.info)

    def list_artifacts(self) -> list[str]:
        return self.store.files(self.tag)

    def __contains__(self, name: str) -> bool:
        return self.store.exists(self.tag, name)

    def read_bytes(self, name: str) -> bytes:
        try:
            return self.store.read(self.tag, name)
        except FileNotFoundError:
            close = difflib.get_close_matches(name, self.list_artifacts(), n=3)
            raise NotFound(f"{self.tag} has no artifact {name!r}"
                           + (f"; did you mean {', '.join(map(repr, close))}?" if close else "")) from None

    def __getitem__(self, name: str) -> Any:
        """By type: .csv -> DataFrame indexed by its first column, .json -> dict, .pt -> checkpoint dict
        (SHA-256 checked, weights_only=True), text (.txt, .git-patch, .log) -> str, anything else -> bytes."""
        data = self.read_bytes(name)
        if name.endswith(".csv"):
            return read_csv(data, f"{self.location}/{name}")
        if name.endswith(".json"):
            return status.read_json(f"{self.location}/{name}", data)
        if name.endswith(".pt"):
            return self._checkpoint(name, data)
        if name.endswith(TEXT_SUFFIXES):
            return data.decode("utf-8", errors="replace")
        return data

    def _checkpoint(self, name: str, data: bytes) -> dict:
        import torch

        try:
            expected = self.read_bytes(name + ".sha256").split()[0].decode()
        except (KeyError, IndexError):
            raise CheckpointError(f"{self.tag}/{name}: no digest in {name}.sha256, so it cannot be trusted") from None
        if hashlib.sha256(data).hexdigest() != expected:
            raise CheckpointError(f"{self.tag}/{name}: SHA-256 does not match {name}.sha256 (truncated, corrupt, "
                                  "or still being uploaded)")
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)

    def final_metrics(self) -> dict[str, float]:
        """results.json's final values when the run ended, else the last row of each CSV so far."""
        try:
            results = self["results.json"]
        except NotFound:
            results = None
        if isinstance(results, dict) and isinstance(results.get("final"), dict):
            return dict(results["final"])
        final: dict[str, float] = {}
        for name in ("train.csv", "test.csv"):
            try:
                frame = self[name]
            except KeyError:
                continue
            if len(frame):
                final.update({k: v for k, v in frame.iloc[-1].items() if k != "date"})
        return final


Key = Union[str, int, slice]


class ExperimentRepository:
    """The experiments under a runs root: a folder, or a URL such as s3://bucket/prefix."""

    def __init__(self, root: str | None = None):
        self.root = root or runs_root()
        self.store = Store(self.root)

    def __repr__(self) -> str:
        return f"<ExperimentRepository: {self.root}>"

    def tags(self) -> list[str]:
        """Every tag, oldest first: by the minute in the tag, then by creation time within the minute."""
        tags = self.store.tags()
        minutes = [t[:12] for t in tags]
        if len(set(minutes)) == len(minutes):
            return tags
        created = {t: _created(Experiment(self.store, t)) if minutes.count(t[:12]) > 1 else "" for t in tags}
        return sorted(tags, key=lambda t: (t[:12], created[t], t))

    def __len__(self) -> int:
        return len(self.store.tags())

    def __iter__(self):
        return iter(self[:])

    def resolve_tag(self, ref: str) -> str:
        """The one tag equal to or starting with `ref`; NotFound naming the candidates otherwise."""
        if ref.strip("./") and "/" not in ref and self.store.exists(ref, status.FILE):
            return ref  # a whole tag: no need to list the runs root (an S3 listing, for a URL root)
        tags = self.store.tags()
        if ref in tags:
            return ref
        matches = [t for t in tags if t.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise NotFound(f"{ref!r} is the start of {len(matches)} experiments in {self.root}: "
                           f"{', '.join(matches[:5])}{' ...' if len(matches) > 5 else ''}; give more of the tag")
        close = difflib.get_close_matches(ref, tags, n=3, cutoff=0.6)
        raise NotFound(f"no experiment {ref!r} in {self.root}" + (f"; did you mean {', '.join(close)}?" if close
                                                                   else f" ({len(tags)} experiments there)"))

    def __getitem__(self, key: Key) -> Any:
        """repo["tag or unique prefix"] -> Experiment; repo[0], repo[-1], repo[:] by age, oldest first."""
        if isinstance(key, str):
            return Experiment(self.store, self.resolve_tag(key))
        return ([Experiment(self.store, t) for t in self.tags()])[key]

    def meld_csv(self, experiments: dict[str, str] | list[str], artifact: str, field: str) -> Any:
        """One DataFrame: column `field` of `artifact` from each experiment, a column per experiment named by
        its label (dict {tag: label}) or tag (list), on the union of their x values (NaN where one lacks x)."""
        import pandas as pd

        labels = experiments if isinstance(experiments, dict) else {t: t for t in experiments}
        columns = {}
        for ref, label in labels.items():
            frame = self[ref][artifact]
            if field not in frame.columns:
                raise NotFound(f"{ref}/{artifact} has no column {field!r}; it has {', '.join(frame.columns)}")
            columns[label] = frame[field]
        return pd.concat(columns, axis=1).sort_index()

    def diff(self, a: str, b: str) -> dict[str, tuple[Any, Any]]:
        """The opts that differ between two experiments: {dotted.key: (value in a, value in b)}; a key only one
        of them has shows "<absent>" for the other."""
        left, right = flatten(self[a]["opts.json"]), flatten(self[b]["opts.json"])
        return {k: (left.get(k, ABSENT), right.get(k, ABSENT)) for k in sorted(left.keys() | right.keys())
                if left.get(k, ABSENT) != right.get(k, ABSENT)}

    def search(self, search_id: str) -> Any:
        """The trials of search `search_id` as a DataFrame, one row per trial: trial, state, tag, one column per
        sampled key (dotted), one per objective (its metric), pareto (non-dominated; one objective: the best trial)
        and wall_s. What `playground search report` prints."""
        from playground.search.report import search_frame

        return search_frame(search_id, self.root)

    def search_trials(self, search_id: str) -> list[Experiment]:
        """The experiments of search `search_id`'s trials, by trial number (a damaged status.json is skipped)."""
        found = []
        for exp in self[:]:
            try:
                search = exp.info.get("search")
            except DataError:
                continue
            if isinstance(search, dict) and search.get("id") == search_id:
                found.append((search["trial"] if isinstance(search.get("trial"), int) else -1, exp))
        return [exp for _, exp in sorted(found, key=lambda pair: pair[0])]

    def summary(self, experiments: list[Experiment] | None = None) -> Any:
        """A DataFrame, a row per experiment: status, start, duration, components and final metrics. An
        experiment with a damaged JSON file shows as "unreadable" (and a warning names the file), so one bad
        folder does not hide the others."""
        import pandas as pd

        rows = []
        for exp in self[:] if experiments is None else experiments:
            try:
                rows.append(_summary_row(exp))
            except DataError as e:
                log.warning("%s", e)
                rows.append({"tag": exp.tag, "status": UNREADABLE})
        return pd.DataFrame(rows)


def _summary_row(exp: Experiment) -> dict:
    info, opts = exp.info, exp.opts
    current = status.effective(info)
    row = {"tag": exp.tag, "status": current, "start": _short_time(info.get("started")),
           "duration": _duration(info, current), "model": (opts.get("model") or {}).get("model_name_py", ""),
           "forward": (opts.get("model") or {}).get("forward_pass_py", "")}
    if sweep := info.get("sweep"):
        row["sweep"] = sweep.get("id", "")
    if isinstance(search := info.get("search"), dict):
        row["search"], row["trial"] = search.get("id", ""), search.get("trial")
    row.update({k: v for k, v in exp.final_metrics().items() if k not in NOT_METRICS})
    return row


def _created(exp: Experiment) -> str:
    """When `exp` was created, for ordering; "" when its status.json is damaged (it is listed, not fatal)."""
    try:
        return exp.info.get("created", "")
    except DataError:
        return ""


def _short_time(text: str | None) -> str:
    when = status.parse_time(text)
    return when.strftime("%Y-%m-%d %H:%M") if when else ""


def _duration(info: dict, current: str) -> str:
    """Time spent in the attempts, as h:mm:ss: a running attempt counts up to now, a killed one not at all."""
    attempts = info.get("attempts") or []
    if not attempts:
        return ""
    total, now = 0.0, status.parse_time(status.now())
    for attempt in attempts:
        started, ended = status.parse_time(attempt.get("started")), status.parse_time(attempt.get("ended"))
        if started and not ended and attempt is attempts[-1] and current == "running":
            ended = now
        if started and ended:
            total += (ended - started).total_seconds()
    seconds = int(round(total))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
