"""Node affinity with Kubernetes' semantics, on one node's labels (the index does the same over arrays).

Required: the node must match one of the ``nodeSelectorTerms`` (ORed); a term matches when all its
``matchExpressions`` do (ANDed); an empty term matches nothing. Preferred: each matching term adds its
``weight``; the score uses the matched share of the total weight.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from updraft.model.spec import Affinity, NodeSelectorRequirement, NodeSelectorTerm

_INT = re.compile(r"^[-+]?\d{1,18}$")


def label_int(value: str | None) -> int | None:
    """A label as an integer for Gt/Lt, or None when it is not one (such a node never matches)."""
    return int(value) if value is not None and _INT.match(value) else None


def matches(labels: Mapping[str, str], req: NodeSelectorRequirement) -> bool:
    have = labels.get(req.key)
    op = req.operator
    if op == "In":
        return have is not None and have in req.values
    if op == "NotIn":
        return have is None or have not in req.values
    if op == "Exists":
        return have is not None
    if op == "DoesNotExist":
        return have is None
    number = label_int(have)
    if number is None:
        return False
    bound = int(req.values[0])
    return number > bound if op == "Gt" else number < bound


def term_matches(labels: Mapping[str, str], term: NodeSelectorTerm) -> bool:
    return bool(term.matchExpressions) and all(matches(labels, r) for r in term.matchExpressions)


def required_ok(labels: Mapping[str, str], affinity: Affinity | None) -> bool:
    na = affinity.nodeAffinity if affinity else None
    if na is None or na.requiredDuringSchedulingIgnoredDuringExecution is None:
        return True
    return any(term_matches(labels, t) for t in na.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms)


def preferred_share(labels: Mapping[str, str], affinity: Affinity | None) -> float | None:
    """Matched share of the preferred terms' total weight, or None when the task prefers nothing."""
    na = affinity.nodeAffinity if affinity else None
    if na is None or not na.preferredDuringSchedulingIgnoredDuringExecution:
        return None
    terms = na.preferredDuringSchedulingIgnoredDuringExecution
    total = sum(t.weight for t in terms)
    return sum(t.weight for t in terms if term_matches(labels, t.preference)) / total


def describe(affinity: Affinity | None) -> str:
    """The required terms, as an operator reads them: ``gpu-model in (V100M16, V100M32) or cores > 8``."""
    na = affinity.nodeAffinity if affinity else None
    if na is None or na.requiredDuringSchedulingIgnoredDuringExecution is None:
        return ""
    words = {"In": "in", "NotIn": "not in", "Gt": ">", "Lt": "<"}

    def one(r: NodeSelectorRequirement) -> str:
        if r.operator == "Exists":
            return f"has {r.key}"
        if r.operator == "DoesNotExist":
            return f"no {r.key}"
        vals = r.values[0] if r.operator in ("Gt", "Lt") else "(" + ", ".join(r.values) + ")"
        return f"{r.key} {words[r.operator]} {vals}"

    terms = na.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms
    return " or ".join(" and ".join(one(r) for r in t.matchExpressions) or "(empty term)" for t in terms)
