"""The console's numbers, read without Spark: Delta tables through delta-rs and pyarrow, the ledger, the config.

Each function returns plain data for one page. Identifier values are returned as stored; the page masks them for
keys without the ``pii`` scope (`cdp_spark.api.console.masked`). Tables are read whole and aggregated in Arrow:
the console serves one person at a time, and these tables are small next to the event tables it never reads
(``gold.id_graph`` and ``silver.id_links`` are read filtered, one profile's identifiers).

Example:
    >>> audiences(lake, config)[0]["sizes"][-1]          # doctest: +SKIP
    {'as_of': datetime.date(2026, 11, 1), 'size': 57, 'entered': 57, 'exited': 0}
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake


def read(lake: "Lake", name: str, columns: list[str] | None = None, where: Any = None) -> pa.Table | None:
    """A table's current snapshot as Arrow (selected columns, an optional pyarrow filter); None before it exists."""
    if name not in lake.registry or not lake.exists(name):
        return None
    return lake.delta_table(name).to_pyarrow_dataset().to_table(columns=columns, filter=where)


def overview(lake: "Lake", config: "CdpConfig") -> dict[str, Any]:
    """Last run per stage and job, table freshness, streaming lag, destinations, leases (`cdp status`'s data)."""
    from cdp_spark.ops.status import status

    return status(lake, config)


# ------------------------------------------------------------------------------------------------ profiles


def profile_extras(lake: "Lake", profile_id: str) -> dict[str, Any]:
    """What the serving store's document may lag behind (it is built by the profiles stage, before the scores and
    audiences of the same run): the latest scores row and the current audience memberships."""
    scores = read(lake, "gold.profile_scores", where=pc.field("profile_id") == profile_id)
    row = scores.to_pylist()[0] if scores is not None and scores.num_rows else None
    members = read(lake, "gold.audience_members", ["audience", "variant", "entered_at"],
                   pc.field("profile_id") == profile_id)
    return {"scores": row, "audiences": sorted(members.to_pylist(), key=lambda r: r["audience"]) if members else []}


def identity_graph(lake: "Lake", profile_id: str) -> dict[str, Any]:
    """The profile's identifiers (``gold.id_graph``) and the links between them or to them (``silver.id_links``):
    which pairs were seen together, how often, from which sources, first and last seen, and the link status."""
    nodes = read(lake, "gold.id_graph", ["id_type", "value", "vertex_id", "assigned_at", "split_reason"],
                 pc.field("profile_id") == profile_id)
    if nodes is None or not nodes.num_rows:
        return {"identifiers": [], "links": []}
    identifiers = sorted(nodes.to_pylist(), key=lambda r: (r["id_type"], r["value"]))
    vertices = pa.array([r["vertex_id"] for r in identifiers], pa.int64())
    links = read(lake, "silver.id_links", ["src_type", "src_value", "dst_type", "dst_value", "src_id", "dst_id",
                                           "times_seen", "first_seen", "last_seen", "sources", "status"],
                 pc.field("src_id").isin(vertices) | pc.field("dst_id").isin(vertices))
    rows = sorted(links.to_pylist(), key=lambda r: (r["src_type"], r["src_value"], r["dst_type"], r["dst_value"])) \
        if links is not None else []
    return {"identifiers": identifiers, "links": rows}


# ----------------------------------------------------------------------------------------------- audiences


def audiences(lake: "Lake", config: "CdpConfig") -> list[dict[str, Any]]:
    """Every configured audience (and any other in the tables): sizes per as-of date with entered and exited,
    current members per variant against the configured weights, and its destinations with their last delivery."""
    sizes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    table = read(lake, "gold.audience_sizes", ["audience", "as_of", "size", "entered", "exited"])
    for r in sorted(table.to_pylist() if table is not None else [], key=lambda r: (r["audience"], r["as_of"])):
        sizes[r["audience"]].append({k: r[k] for k in ("as_of", "size", "entered", "exited")})
    variant_counts: dict[str, Counter[str]] = defaultdict(Counter)
    members = read(lake, "gold.audience_members", ["audience", "variant"])
    if members is not None and members.num_rows:
        grouped = members.group_by(["audience", "variant"]).aggregate([([], "count_all")])
        for r in grouped.to_pylist():
            variant_counts[r["audience"]][r["variant"]] = r["count_all"]
    deliveries = last_deliveries(lake)
    defined = {a.name: a for a in config.audiences}
    out = []
    for name in [*defined, *sorted(set(sizes) - set(defined))]:
        a = defined.get(name)
        weights = {v.name: (v.weight, v.holdout) for v in a.variants} if a is not None else {}
        variants = [{"name": v, "weight": w, "holdout": h, "members": variant_counts[name].get(v, 0)}
                    for v, (w, h) in weights.items()]
        variants += [{"name": v, "weight": None, "holdout": False, "members": n}
                     for v, n in sorted(variant_counts[name].items()) if v not in weights]
        destinations = [{"name": d.name, "transport": d.transport.type, "last": deliveries.get(d.name)}
                        for d in config.destinations if any(link.name == name for link in d.audiences)]
        out.append({"name": name, "description": a.description if a is not None else "", "defined": a is not None,
                    "sizes": sizes.get(name, []), "members": sum(variant_counts[name].values()),
                    "variants": variants, "destinations": destinations})
    return out


def last_deliveries(lake: "Lake") -> dict[str, dict[str, Any]]:
    """Per destination, its latest delivery attempt in ``ops.deliveries`` (by end time)."""
    table = read(lake, "ops.deliveries", ["destination", "as_of", "status", "records_sent", "adds", "removes",
                                          "failures", "ended_at", "started_at"])
    latest: dict[str, dict[str, Any]] = {}
    for r in table.to_pylist() if table is not None else []:
        when = r["ended_at"] or r["started_at"]
        seen = latest.get(r["destination"])
        if seen is None or when > (seen["ended_at"] or seen["started_at"]):
            latest[r["destination"]] = r
    return latest


# ------------------------------------------------------------------------------------------------ identity


def identity(lake: "Lake", top: int = 10) -> dict[str, Any]:
    """Component sizes (profiles by number of identifiers), the largest profiles, blocked identifiers, and the
    latest identity run."""
    graph = read(lake, "gold.id_graph", ["profile_id", "id_type"])
    distribution: list[dict[str, int]] = []
    largest: list[dict[str, Any]] = []
    if graph is not None and graph.num_rows:
        per_type = graph.group_by(["profile_id", "id_type"]).aggregate([([], "count_all")]).to_pylist()
        by_profile: dict[str, dict[str, int]] = defaultdict(dict)
        for r in per_type:
            by_profile[r["profile_id"]][r["id_type"]] = r["count_all"]
        size = {p: sum(t.values()) for p, t in by_profile.items()}
        counts = Counter(size.values())
        distribution = [{"identifiers": n, "profiles": counts[n]} for n in sorted(counts)]
        for p in sorted(size, key=lambda p: (-size[p], p))[:top]:
            largest.append({"profile_id": p, "identifiers": size[p], "by_type": dict(sorted(by_profile[p].items()))})
    blocked = read(lake, "silver.identifiers", ["id_type", "value", "times_seen", "sources", "status"],
                   pc.field("status") == "blocked")
    runs = read(lake, "silver.identity_runs", ["run_id", "as_of", "mode", "reason", "records_read",
                                               "vertices_resolved", "stats", "finished_at"])
    latest = max(runs.to_pylist(), key=lambda r: r["finished_at"]) if runs is not None and runs.num_rows else None
    if latest is not None:
        latest = {**latest, "stats": json.loads(latest["stats"] or "{}")}
    return {"distribution": distribution, "largest": largest, "profiles": sum(d["profiles"] for d in distribution),
            "blocked": sorted(blocked.to_pylist(), key=lambda r: (-r["times_seen"], r["id_type"], r["value"]))
            if blocked is not None else [],
            "latest_run": latest}
