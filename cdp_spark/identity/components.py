"""Connected components in DataFrame operations: the alternating large-star / small-star algorithm.

Kiveris et al., "Connected Components in MapReduce and Beyond" (SoCC 2014), the algorithm behind GraphFrames'
default. The number of rounds grows with the log of the component diameter (a 10,000-node chain needs about
twenty), unlike min-label propagation, which needs diameter-many. Every round's edges are checkpointed so the
lineage stays one round long.

Edges are kept canonical: ``src > dst`` (each edge points at its smaller end), no self loops, no duplicates. The
algorithm has converged when the edges form stars around each component's minimum: every ``src`` has exactly one
edge and no ``dst`` is a ``src``. Then each ``src`` belongs to the component labelled by its ``dst``.

Neither step adds or loses a node, so the node count ``n`` is computed once. Since ``n <= #srcs + #dsts <= #edges +
#dsts``, with equality exactly for a star forest, each round's convergence test is one small aggregation of the
edges by ``dst`` instead of a degree count over both ends of every edge.

Example:
    >>> cc = connected_components(spark.createDataFrame([(1, 2), (2, 3), (7, 8)], "src long, dst long"))  # doctest: +SKIP
    >>> sorted(map(tuple, cc.collect()))                                                                   # doctest: +SKIP
    [(1, 1), (2, 1), (3, 1), (7, 7), (8, 7)]
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

log = logging.getLogger(__name__)

Engine = Literal["auto", "native", "graphframes", "graphx"]


class NotConverged(RuntimeError):
    """Connected components did not converge within max_iterations rounds."""


@dataclass
class CCStats:
    """What a connected-components run did: engine used and rounds (one large-star + one small-star each)."""

    engine: str = "native"
    iterations: int = 0


def canonical_edges(edges: DataFrame) -> DataFrame:
    """``(src, dst)`` -> distinct ``(src, dst)`` with ``src > dst``; self loops and null ends dropped."""
    return (
        edges.where(F.col("src").isNotNull() & F.col("dst").isNotNull() & (F.col("src") != F.col("dst")))
        .select(F.greatest("src", "dst").alias("src"), F.least("src", "dst").alias("dst"))
        .distinct()
    )


def large_star(edges: DataFrame) -> DataFrame:
    """Connect every node's larger neighbours to the node's smallest neighbourhood member.

    For a canonical edge ``(v, u)`` (``v > u``), ``v`` is a larger neighbour of ``u``; it is re-attached to
    ``m(u) = min(u, smaller neighbours of u)``.
    """
    m = edges.groupBy(F.col("src").alias("node")).agg(F.min("dst").alias("m"))
    # No distinct here: small_star tolerates duplicates and de-duplicates its own output.
    return edges.join(m, edges.dst == m.node, "left").select(edges.src.alias("src"), F.coalesce(m.m, edges.dst).alias("dst"))


def small_star(edges: DataFrame) -> DataFrame:
    """Connect every node and its smaller neighbours to the smallest of those neighbours.

    For node ``u`` with smaller neighbours ``S`` and ``m = min(S)``: emit ``(u, m)`` and ``(v, m)`` for ``v`` in ``S``.
    """
    m = F.min("dst").over(Window.partitionBy("src"))
    return (
        edges.select("src", "dst", m.alias("m"))
        .select(F.when(F.col("dst") == F.col("m"), F.col("src")).otherwise(F.col("dst")).alias("src"), F.col("m").alias("dst"))
        .distinct()
    )


def star_forest_check(edges: DataFrame) -> tuple[bool, int]:
    """(whether the canonical ``edges`` form a star forest, their node count): one aggregation over both ends.

    A star forest: every ``src`` has one edge and no ``dst`` is a ``src``, the fixed point of both steps.
    """
    ends = edges.select(F.col("src").alias("node"), F.lit(1).alias("out"), F.lit(0).alias("inn")).unionByName(
        edges.select(F.col("dst").alias("node"), F.lit(0).alias("out"), F.lit(1).alias("inn")))
    degrees = ends.groupBy("node").agg(F.sum("out").alias("out"), F.sum("inn").alias("inn"))
    bad = (F.col("out") > 1) | ((F.col("out") > 0) & (F.col("inn") > 0))
    row = degrees.agg(F.count(F.lit(1)).alias("n"), F.count(F.when(bad, 1)).alias("bad")).first()
    return row["bad"] == 0, row["n"]


def is_star_forest(edges: DataFrame, nodes: int) -> bool:
    """Whether canonical ``edges`` over ``nodes`` distinct nodes form a star forest: ``#edges + #dsts == nodes``.

    Example:
        >>> is_star_forest(spark.createDataFrame([(2, 1), (3, 1)], "src long, dst long"), 3)  # doctest: +SKIP
        True
    """
    per_dst = edges.groupBy("dst").agg(F.count(F.lit(1)).alias("k"))
    row = per_dst.agg(F.sum("k").alias("edges"), F.count(F.lit(1)).alias("dsts")).first()
    return (row["edges"] or 0) + row["dsts"] == nodes


def materialise(df: DataFrame, reliable: bool = False) -> DataFrame:
    """Compute ``df`` once and cut its lineage; the one checkpoint helper of the identity package.

    Used for results read more than once (lazily cached plans were recomputed inside broadcasts), for every
    connected-components round (so the plan stays one round long) and for inputs whose files a stage is about to
    overwrite. ``reliable=True`` writes a reliable checkpoint when a checkpoint dir is set and executors run apart
    from the driver (it survives executor loss); otherwise, and by default, a local checkpoint (executor storage,
    cheaper). In local mode the executors are the driver, so a reliable checkpoint would only add a disk write.

    Example:
        >>> edges = materialise(canonical_edges(raw), reliable=True)   # doctest: +SKIP
    """
    spark = df.sparkSession
    sc = spark.sparkContext
    if reliable and sc.getCheckpointDir() and not sc.master.startswith("local"):
        df = df.persist()  # so the checkpoint job does not compute the data a second time
        out = df.checkpoint(eager=True)
        df.unpersist()
        return out
    return df.localCheckpoint(eager=True)


def native_components(
    edges: DataFrame, *, max_iterations: int = 100, checkpoint_every: int = 1, stats: CCStats | None = None
) -> DataFrame:
    """``(id, component)`` for every node of the (long-id) ``edges``; component = smallest member id."""
    stats = stats if stats is not None else CCStats()
    stats.engine = "native"
    current = materialise(canonical_edges(edges), reliable=True)
    converged, nodes = star_forest_check(current)
    rounds = 0
    while not converged:
        if rounds >= max_iterations:
            raise NotConverged(f"connected components did not converge in {max_iterations} rounds")
        rounds += 1
        nxt = small_star(large_star(current))
        current = materialise(nxt, reliable=rounds % checkpoint_every == 0)
        converged = is_star_forest(current, nodes)
        log.debug("connected components round %d", rounds)
    stats.iterations = rounds
    roots = current.select(F.col("dst").alias("id"), F.col("dst").alias("component")).distinct()
    return current.select(F.col("src").alias("id"), F.col("dst").alias("component")).unionByName(roots)


def _graphframes_available(spark: SparkSession) -> bool:
    try:
        from cdp_spark.spark import capabilities

        if not capabilities(spark).graphframes_jvm:
            return False
        import graphframes  # noqa: F401
    except Exception:  # pragma: no cover - depends on the deployment
        return False
    return True


def graphframes_components(edges: DataFrame, vertices: DataFrame, stats: CCStats | None = None) -> DataFrame:
    """GraphFrames' connectedComponents, relabelled so the component is the smallest member id."""
    from graphframes import GraphFrame

    stats = stats if stats is not None else CCStats()
    stats.engine = "graphframes"
    cc = GraphFrame(vertices.select("id").distinct(), edges.select("src", "dst")).connectedComponents()
    label = F.min("id").over(Window.partitionBy("component"))
    return cc.select("id", label.alias("component"))


def graphx_components(edges: DataFrame, stats: CCStats | None = None) -> DataFrame:
    """Spark GraphX's own connected components (Pregel min-label propagation, in pyspark's jars) -> (id, component).

    GraphX has no Python API, so the edges pass through a text edge list under the checkpoint directory (shared by
    executors on a cluster), and the labels come back the same way. Its labels are the smallest member id, like
    ours; its supersteps grow with the graph's diameter. Ids must be longs; isolated vertices are not included.

    Example:
        >>> graphx_components(spark.createDataFrame([(1, 2), (7, 8)], "src long, dst long")).collect()  # doctest: +SKIP
        [Row(id=1, component=1), Row(id=2, component=1), Row(id=7, component=7), Row(id=8, component=7)]
    """
    import uuid

    spark = edges.sparkSession
    stats = stats if stats is not None else CCStats()
    stats.engine = "graphx"
    base = spark.sparkContext.getCheckpointDir()
    if not base:
        raise ValueError("the graphx engine needs a checkpoint directory (lake.checkpoint_dir) for its edge list")
    work = f"{base.rstrip('/')}/graphx-{uuid.uuid4().hex}"
    jvm = spark.sparkContext._jvm  # noqa: SLF001 - GraphX is reachable only through the JVM
    try:
        (edges.where(F.col("src").isNotNull() & F.col("dst").isNotNull())
         .select(F.concat_ws(" ", F.col("src").cast("long"), F.col("dst").cast("long"))).write.text(f"{work}/edges"))
        level = jvm.org.apache.spark.storage.StorageLevel.MEMORY_AND_DISK()
        graph = jvm.org.apache.spark.graphx.GraphLoader.edgeListFile(
            spark.sparkContext._jsc.sc(), f"{work}/edges", False, -1, level, level)  # noqa: SLF001
        tags = getattr(jvm.scala.reflect, "ClassTag$").__getattr__("MODULE$")
        labelled = jvm.org.apache.spark.graphx.lib.ConnectedComponents.run(graph, 2**31 - 1, tags.Int(), tags.Int())
        labelled.vertices().saveAsTextFile(f"{work}/labels")  # lines "(id,component)"
        pair = r"^\((-?\d+),(-?\d+)\)$"
        result = spark.read.text(f"{work}/labels").select(
            F.regexp_extract("value", pair, 1).cast("long").alias("id"),
            F.regexp_extract("value", pair, 2).cast("long").alias("component"))
        return materialise(result, reliable=True)
    finally:
        path = jvm.org.apache.hadoop.fs.Path(work)
        path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(path, True)  # noqa: SLF001


def _integral(field: T.DataType) -> bool:
    return isinstance(field, (T.LongType, T.IntegerType, T.ShortType, T.ByteType))


def connected_components(
    edges: DataFrame,
    vertices: DataFrame | None = None,
    *,
    engine: Engine = "native",
    max_iterations: int = 100,
    checkpoint_every: int = 1,
    stats: CCStats | None = None,
) -> DataFrame:
    """Connected components of ``edges`` (``src``, ``dst``) -> DataFrame(``id``, ``component``).

    ``component`` is the smallest member id, so labels are stable and comparable with any other implementation.
    ``vertices`` (an ``id`` column) adds isolated vertices, each its own component. Ids may be any orderable type:
    integral ids are used directly (the full 64-bit range); others are mapped to longs in sort order, so the
    smallest long is the smallest id. ``engine='auto'`` uses GraphFrames when its JVM classes are loadable;
    ``engine='graphx'`` runs Spark GraphX's implementation instead of ours.
    """
    spark = edges.sparkSession
    stats = stats if stats is not None else CCStats()
    id_type = edges.schema["src"].dataType
    if vertices is not None:
        vertices = vertices.select(F.col("id").cast(id_type).alias("id"))
    # A vertex seen only in a self loop still exists: it is its own component.
    loops = edges.where(F.col("src") == F.col("dst")).select(F.col("src").cast(id_type).alias("id"))
    vertices = loops if vertices is None else vertices.unionByName(loops)
    if engine == "graphframes" or (engine == "auto" and _graphframes_available(spark)):
        all_v = edges.select(F.col("src").alias("id")).unionByName(edges.select(F.col("dst").alias("id")))
        if vertices is not None:
            all_v = all_v.unionByName(vertices)
        return graphframes_components(edges, all_v.where(F.col("id").isNotNull()), stats)

    def components(e: DataFrame) -> DataFrame:
        if engine == "graphx":
            return graphx_components(e, stats)
        return native_components(e, max_iterations=max_iterations, checkpoint_every=checkpoint_every, stats=stats)

    if _integral(id_type) and _integral(edges.schema["dst"].dataType):
        e = edges.select(F.col("src").cast("long").alias("src"), F.col("dst").cast("long").alias("dst"))
        cc = components(e)
        if vertices is not None:
            lone = vertices.where(F.col("id").isNotNull()).select(F.col("id").cast("long").alias("id")).distinct()
            lone = lone.join(cc, "id", "left_anti").select("id", F.col("id").alias("component"))
            cc = cc.unionByName(lone)
        return cc.select(F.col("id").cast(id_type).alias("id"), F.col("component").cast(id_type).alias("component"))

    # Non-integral ids: order-preserving dense long index (distributed sort + zipWithIndex, no single partition).
    ids = edges.select(F.col("src").alias("id")).unionByName(edges.select(F.col("dst").alias("id")))
    if vertices is not None:
        ids = ids.unionByName(vertices)
    ids = ids.where(F.col("id").isNotNull()).distinct().orderBy("id")
    index_schema = T.StructType([T.StructField("id", id_type), T.StructField("ix", T.LongType(), False)])
    index = spark.createDataFrame(ids.rdd.zipWithIndex().map(lambda p: (p[0][0], p[1])), index_schema)
    index = materialise(index, reliable=True)
    s, d = index.alias("s"), index.alias("d")
    e = (edges.join(s, edges.src == F.col("s.id")).join(d, edges.dst == F.col("d.id"))
         .select(F.col("s.ix").alias("src"), F.col("d.ix").alias("dst")))
    cc = components(e)
    full = index.join(cc, index.ix == cc.id, "left").select(index.id, index.ix, F.coalesce(cc.component, index.ix).alias("c"))
    c = index.alias("c")
    return full.join(c, full.c == F.col("c.ix")).select(full.id.alias("id"), F.col("c.id").alias("component"))
