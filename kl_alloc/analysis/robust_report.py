"""The robust part of a report (:mod:`kl_alloc.analysis.report`): IQM per group, probability of
improvement and variance ratios between methods, performance profiles, and the aggregate
across tasks. The statistics are defined in :mod:`kl_alloc.analysis.robust`.

Within a task the groups compared are those with the same swept values (``params``):

- probability of improvement P(X > Y) for every method X against the baseline Y, then for every
  pair of other methods in the registry's order (W vs G);
- variance ratio var(X) / var(Y) of the final scores across seeds, for every method against the
  baseline and, between two other methods, the later over the earlier (G / W);
- performance profile of the task's min-max-normalised scores (0 = the task's worst run of any
  group, 1 = its best), at thresholds 0, 0.05, ..., 1.

Across tasks (``aggregate``, when at least two tasks are aggregated): every group key (method
and swept values) present in all of them, its scores min-max normalised per task; when a key
has different seed counts in different tasks, each task keeps its ``n_min`` lowest seeds (the
stratified bootstrap needs a ``runs x tasks`` matrix). IQM, P(X > Y) and the profile of these.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from kl_alloc.analysis import robust
from kl_alloc.methods import method_sort_key

#: thresholds of the performance profiles (normalised scores)
TAUS = np.linspace(0.0, 1.0, 21)


def group_key(row: dict[str, Any]) -> str:
    return json.dumps({"method": row["method"], "params": row["params"]}, sort_keys=True)


def _finite(values: Sequence[float | None]) -> np.ndarray:
    a = np.array([math.nan if v is None else v for v in values], np.float64)
    return a[np.isfinite(a)]


def method_pairs(methods: Sequence[str], baseline: str) -> tuple[list, list]:
    """``(poi_pairs, variance_pairs)`` among ``methods`` (see the module doc)."""
    others = sorted((m for m in methods if m != baseline), key=method_sort_key)
    poi = [(m, baseline) for m in others if baseline in methods]
    var = list(poi)
    for a, b in itertools.combinations(others, 2):
        poi.append((a, b))
        var.append((b, a))
    return poi, var


def _by_params(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        if r["n"]:
            out.setdefault(json.dumps(r["params"], sort_keys=True), {})[r["method"]] = r
    return out


def add_task_statistics(
    task: dict[str, Any], baseline: str, resamples: int, seed: int, profile_resamples: int
) -> None:
    """Add ``iqm`` to every row and ``comparisons``, ``variance`` and ``profile`` to ``task``;
    a row's ``var_ratio`` / ``var_lo`` / ``var_hi`` against its baseline become the ``variance``
    entry's numbers (the same ratio, one interval)."""
    rows = task["rows"]
    for r in rows:
        r["iqm"] = robust.iqm_interval(_finite(r["final"]), resamples, seed)
    task["comparisons"], task["variance"] = [], []
    for pkey, methods in _by_params(rows).items():
        poi_pairs, var_pairs = method_pairs(list(methods), baseline)
        for x, y in poi_pairs:
            a, b = _finite(methods[x]["final"]), _finite(methods[y]["final"])
            task["comparisons"].append(
                {
                    "params": json.loads(pkey),
                    "x": x,
                    "y": y,
                    "poi": robust.probability_of_improvement(a, b, resamples, seed),
                }
            )
        for x, y in var_pairs:
            a, b = _finite(methods[x]["final"]), _finite(methods[y]["final"])
            ratio = robust.variance_ratio(a, b, resamples, seed)
            task["variance"].append(
                {
                    "params": json.loads(pkey),
                    "x": x,
                    "y": y,
                    "n": [int(a.size), int(b.size)],
                    "ratio": ratio,
                }
            )
            row = methods[x]
            if row.get("baseline") == {"method": y, "params": methods[y]["params"]}:
                # one interval per ratio in a report: the row's own (a numpy bootstrap that
                # dropped infinite resamples) gave another interval for the same var / var_base
                row.update(var_ratio=ratio["value"], var_lo=ratio["lo"], var_hi=ratio["hi"])
    normalised = robust.minmax_normalise(
        {group_key(r): _finite(r["final"]) for r in rows if r["n"]}
    )
    task["normalisation"] = "min-max over all runs of the task"
    task["profile"] = _profile(normalised, profile_resamples, seed)


def _profile(scores: dict[str, np.ndarray], resamples: int, seed: int) -> dict[str, Any]:
    scores = {k: v for k, v in scores.items() if np.size(v)}
    return robust.performance_profile(scores, TAUS, resamples, seed) if scores else {}


def aggregate(
    tasks: list[dict[str, Any]], baseline: str, resamples: int, seed: int, profile_resamples: int
) -> dict[str, Any] | None:
    """The aggregate over ``tasks`` (module doc); ``None`` with fewer than two tasks."""
    if len(tasks) < 2:
        return None
    per_task: list[dict[str, np.ndarray]] = []
    for task in tasks:
        norm = robust.minmax_normalise(
            {group_key(r): _finite(r["final"]) for r in task["rows"] if r["n"]}
        )
        per_task.append(norm)
    keys = sorted(set.intersection(*(set(n) for n in per_task)))
    matrices: dict[str, np.ndarray] = {}
    for k in keys:
        n_min = min(n[k].size for n in per_task)
        if n_min:
            matrices[k] = np.stack([n[k][:n_min] for n in per_task], axis=1)
    groups = []
    for k, m in matrices.items():
        info = json.loads(k)
        groups.append(
            info | {"runs": int(m.shape[0]), "iqm": robust.iqm_interval(m, resamples, seed)}
        )
    comparisons = []
    by_params: dict[str, list[str]] = {}
    for k in matrices:
        info = json.loads(k)
        by_params.setdefault(json.dumps(info["params"], sort_keys=True), []).append(info["method"])
    for pkey, methods in by_params.items():
        params = json.loads(pkey)

        def key(m: str, params=params) -> str:
            return json.dumps({"method": m, "params": params}, sort_keys=True)

        for x, y in method_pairs(methods, baseline)[0]:
            poi = robust.probability_of_improvement(
                matrices[key(x)], matrices[key(y)], resamples, seed
            )
            comparisons.append({"params": params, "x": x, "y": y, "poi": poi})
    return {
        "tasks": [t["task"] for t in tasks],
        "normalisation": "min-max per task over all runs of the task",
        "groups": groups,
        "comparisons": comparisons,
        "profile": _profile(matrices, profile_resamples, seed),
    }


__all__ = ["TAUS", "add_task_statistics", "aggregate", "group_key", "method_pairs"]
