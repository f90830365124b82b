"""Joining the shard stores of a sharded extraction (:mod:`deepfeat.shards`) into one feature store.

Part of the store layer (:mod:`deepfeat.store`): the shards are complete stores whose ``config``
carries a ``shard`` entry (index, count, start, stop); the merged store is written by
:func:`deepfeat.store.write_store`, atomically, one block of rows in memory at a time.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from .config import canonical_json
from .errors import StoreError
from .io import attrs_dict, read_strings
from .store import describe_difference, open_store, write_store

_TIMINGS = ("extract_seconds", "clips_per_second", "load_seconds")  #: attributes a merge recomputes


def merge_stores(parts: Sequence[str | Path], out: str | Path, attrs: dict | None = None) -> Path:
    """Join the shard stores ``parts`` of one sharded run, in order, into the store ``out``.

    The result is the store a single run would have written: rows in manifest order, the
    configuration without its ``shard`` entry, the attributes of the first shard, ``n_clips`` of
    the whole dataset, ``extract_seconds`` and ``load_seconds`` summed over the shards (processing
    time, as a resumed single run sums its sessions) and ``clips_per_second`` from it; ``device`` lists every device
    used. ``attrs`` are written last. ``out`` appears only once complete (:func:`~deepfeat.io.atomic_path`);
    one block of rows is in memory at a time.

    Raises :class:`StoreError` naming the file when a part is not a complete shard store, when
    the parts' configurations differ (other than their ``shard`` entry), or when they are not the
    shards 1…n of n in order, each starting where the previous one stops, and when no part has rows.
    """
    parts = [Path(p) for p in parts]
    heads = [_head(part) for part in parts]
    config = _check_shards(parts, [json.loads(h["attrs"].get("config", "{}")) for h in heads],
                           [h["label_names"] for h in heads])
    if not any(h["rows"] for h in heads):
        raise StoreError(f"{out}: no clip could be processed in any shard (see the skipped lists of {parts[0].parent} "
                         "and the logs); check the audio files")
    first = {k: v for k, v in heads[0]["attrs"].items()
             if k not in ("format", "format_version", "config", "n_clips", "complete", *_TIMINGS)}
    seconds = float(sum(h["attrs"].get("extract_seconds", 0.0) for h in heads))
    n_clips = json.loads(heads[-1]["attrs"]["config"])["shard"]["stop"]
    devices = sorted({str(h["attrs"]["device"]) for h in heads if "device" in h["attrs"]})
    load = float(sum(h["attrs"].get("load_seconds", 0.0) for h in heads))
    merged = {**first, "extract_seconds": seconds, "clips_per_second": n_clips / seconds if seconds > 0 else 0.0,
              "load_seconds": load,
              **({"device": ", ".join(devices)} if devices else {}), **(attrs or {})}
    return write_store(Path(out), canonical_json(config), n_clips, heads[0]["label_names"], merged,
                       (block for part in parts for block in _store_blocks(part)))


def _head(path: Path) -> dict:
    """A complete store's attributes, label names and number of rows."""
    with open_store(path) as f:
        return {"attrs": attrs_dict(f), "label_names": read_strings(f["label_names"]),
                "rows": f["features"].shape[0] if "features" in f else 0}


def _check_shards(parts: list[Path], configs: list[dict], label_names: list[list[str]]) -> dict:
    """The common configuration of shard stores (without ``shard``); :class:`StoreError` unless
    they are shards 1…n of n of one run, contiguous and in order."""
    if not parts:
        raise StoreError("no shard stores to merge")
    base, start = None, 0
    for i, (part, config) in enumerate(zip(parts, configs)):
        shard = config.pop("shard", None)
        if not isinstance(shard, dict):
            raise StoreError(f"{part}: not a shard store (its configuration has no shard entry); merge only the "
                             "shards of one `deepfeat extract --shards` run")
        if base is None:
            base = config
        elif canonical_json(config) != canonical_json(base) or label_names[i] != label_names[0]:
            difference = describe_difference(base, config) if config != base else "label_names differ"
            raise StoreError(f"{part}: made with a different configuration than {parts[0].name} ({difference}); "
                             "re-extract it with the same options (or pass --overwrite to start all shards again)")
        if shard.get("count") != len(parts):
            raise StoreError(f"{part}: is one of {shard.get('count')} shards, but {len(parts)} were given to merge; "
                             "merge every shard of one run, in order")
        if (shard.get("index"), shard.get("start")) != (i, start):
            raise StoreError(f"{part}: is shard {shard.get('index', 0) + 1} of {shard.get('count')} starting at clip "
                             f"{shard.get('start')}, but shard {i + 1} of {len(parts)} starting at clip {start} is needed "
                             "here; merge the shards of one run, in order")
        start = shard["stop"]
    return base


def _store_blocks(path: Path, rows: int = 4096) -> Iterator[dict]:
    """A complete store's rows as blocks of at most ``rows`` rows, then its skipped clips and warnings."""
    with open_store(path) as f:
        n = f["features"].shape[0] if "features" in f else 0
        for start in range(0, n, rows):
            part = slice(start, min(start + rows, n))
            yield {"features": f["features"][part], "ids": f["ids"].asstr()[part], "labels": f["labels"][part],
                   "folds": f["folds"][part],
                   "window_starts": f["window_starts"][part] if "window_starts" in f else None,
                   "channels": f["channels"][part] if "channels" in f else None}
        yield {"features": (), **{f"{group}_{part}": f[f"{group}/{part}"].asstr()[()]
                                  for group in ("skipped", "warnings") if group in f for part in ("ids", "reasons")}}
