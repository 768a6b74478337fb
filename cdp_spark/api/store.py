"""The serving store: one JSON document per profile plus an identifier index, in an embedded SQLite file.

Why SQLite: an indexed primary-key lookup is a few microseconds, it needs no server, every API worker opens its
own read-only connection, and WAL mode lets a PATCH write while readers read. Why not Delta: a Delta read per
request would scan files; the store is built for point lookups.

Atomic refresh: each rebuild writes a **new file** (``profiles-<stamp>.sqlite``), fills and indexes it, switches
it to WAL, then replaces the small ``CURRENT`` pointer file with ``os.replace`` (atomic on POSIX). A reader checks
the pointer (one ``stat``) per request and opens the new file when it changed; a reader never sees a half-built
store, and requests already running finish on the old file, which is kept (``serving.keep_files``) and deleted
later.

Layout of a store file::

    profiles(profile_id PRIMARY KEY, doc JSON)            -- a rowid table (documents are large rows)
    identifiers(id_type, value, profile_id, PRIMARY KEY (id_type, value))   + index on profile_id
    patches(seq, profile_id, traits JSON, at)            -- API trait writes since the build
    meta(key PRIMARY KEY, value)

Example:
    >>> store = ServingStore("/tmp/serving")                                             # doctest: +SKIP
    >>> store.build([("p1", '{"profile_id": "p1"}', ["email\\x01a@x.com"])])            # doctest: +SKIP
    >>> store.by_identifier("email", "a@x.com")["profile_id"]                          # doctest: +SKIP
    'p1'
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from cdp_spark.locations import local_path

from cdp_spark.lake.files import fsync_path

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake

log = logging.getLogger(__name__)

POINTER = "CURRENT"
SEP = "\x01"  # between id type and value in the flattened identifier list
BATCH = 10_000

SCHEMA = """
CREATE TABLE profiles (profile_id TEXT PRIMARY KEY, doc TEXT NOT NULL);  -- rowid table: documents are large rows
CREATE TABLE identifiers (id_type TEXT NOT NULL, value TEXT NOT NULL, profile_id TEXT NOT NULL,
                          PRIMARY KEY (id_type, value)) WITHOUT ROWID;
CREATE TABLE patches (seq INTEGER PRIMARY KEY, profile_id TEXT NOT NULL, traits TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
"""


class StoreMissing(RuntimeError):
    """No store has been built yet (run the profiles stage, or `cdp api refresh`)."""


class ServingStore:
    """A folder of store files and the pointer to the current one; thread-safe readers, locked writers."""

    def __init__(self, folder: str | os.PathLike[str], *, keep_files: int = 2):
        self.folder = Path(folder)
        self.keep_files = keep_files
        self._local = threading.local()
        self._stamp: tuple[int, int] | None = None
        self._current: Path | None = None
        self._pointer_lock = threading.Lock()

    # ---- which file is current ----
    def current(self) -> Path:
        """The current store file (re-read when the pointer changed)."""
        pointer = self.folder / POINTER
        try:
            st = pointer.stat()
        except FileNotFoundError:
            raise StoreMissing("the serving store has not been built yet") from None
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp != self._stamp:
            with self._pointer_lock:
                self._current = self.folder / pointer.read_text(encoding="utf-8").strip()
                self._stamp = stamp
        assert self._current is not None
        return self._current

    def _connection(self, path: Path) -> sqlite3.Connection:
        conns: dict[Path, sqlite3.Connection] = getattr(self._local, "conns", None) or {}
        conn = conns.get(path)
        if conn is None:
            for old in conns.values():  # this thread moves to the new file; the old one may be deleted later
                old.close()
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            self._local.conns = {path: conn}
            conn.execute("PRAGMA query_only = ON")
        return conn

    def _read(self, query: str, args: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows of a read-only query on the current file. Rebuilds in quick succession may clean up the file a
        reader is opening or reading (``keep_files``); the pointer then names a newer file and the query runs there."""
        for attempt in range(3):
            path = self.current()
            try:
                return self._connection(path).execute(query, args).fetchall()
            except sqlite3.OperationalError:
                for conn in self._local.conns.values():
                    conn.close()
                self._local.conns = {}
                self._stamp = None
                if attempt == 2 or self.current() == path:
                    raise
        raise AssertionError("the loop returns or raises")

    # ---- lookups ----
    def by_profile_id(self, profile_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT doc FROM profiles WHERE profile_id = ?", (profile_id,))
        return json.loads(rows[0][0]) if rows else None

    def by_identifier(self, id_type: str, value: str) -> dict[str, Any] | None:
        rows = self._read("SELECT p.doc FROM identifiers i JOIN profiles p ON p.profile_id = i.profile_id "
                          "WHERE i.id_type = ? AND i.value = ?", (id_type, value))
        return json.loads(rows[0][0]) if rows else None

    def meta(self) -> dict[str, str]:
        return dict(self._read("SELECT key, value FROM meta"))

    # ---- writes ----
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time across processes (API workers patching, a refresh swapping, an erasure)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    @staticmethod
    def _writer(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA secure_delete = ON")  # erased rows are overwritten with zeros, not left in free pages
        return conn

    def apply_patch(self, profile_id: str, traits: dict[str, Any], at: dt.datetime) -> dict[str, Any] | None:
        """Set traits on a served profile at once (and remember the patch for the next refresh); the new doc."""
        with self._locked():
            path = self.current()
            conn = self._writer(path)
            try:
                doc = _patch(conn, profile_id, traits, at, record=True)
            finally:
                conn.close()
        return doc

    def build(self, rows: Iterable[tuple[str, str, list[str] | None]], *, meta: dict[str, str] | None = None,
              replay_since: dt.datetime | None = None) -> Path:
        """Build a new store file from (profile_id, doc JSON, ["id_type\\x01value", ...]) rows, then swap it in.

        Patches recorded in the previous store since ``replay_since`` are re-applied first, so a PATCH that landed
        after the rebuild read bronze is not lost until the next rebuild.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        path = self.folder / f"profiles-{stamp}-{uuid.uuid4().hex[:8]}.sqlite"
        conn = sqlite3.connect(str(path), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = OFF")  # a file nobody reads yet: no journal needed while filling
            conn.execute("PRAGMA synchronous = OFF")
            conn.executescript(SCHEMA)
            conn.execute("BEGIN")
            profiles, ids = [], []
            n = 0
            for profile_id, doc, flat_ids in rows:
                profiles.append((profile_id, doc))
                for item in flat_ids or ():
                    id_type, _, value = item.partition(SEP)
                    ids.append((id_type, value, profile_id))
                n += 1
                if len(profiles) >= BATCH:
                    _flush(conn, profiles, ids)
            _flush(conn, profiles, ids)
            conn.executemany("INSERT INTO meta VALUES (?, ?)",
                             sorted({**(meta or {}), "built_at": _iso(dt.datetime.now(dt.timezone.utc)),
                                     "profiles": str(n)}.items()))
            conn.execute("COMMIT")
            conn.execute("CREATE INDEX identifiers_profile ON identifiers (profile_id)")
            conn.execute("ANALYZE")
            conn.execute("PRAGMA journal_mode = WAL")
        finally:
            conn.close()
        with self._locked():
            if replay_since is not None:
                self._replay(path, replay_since)
            fsync_path(path)
            self._swap(path)
        self._cleanup()
        return path

    def _replay(self, path: Path, since: dt.datetime) -> None:
        try:
            old = self.current()
        except StoreMissing:
            return
        src = sqlite3.connect(f"file:{old}?mode=ro", uri=True)
        try:
            patches = src.execute("SELECT profile_id, traits, at FROM patches WHERE at >= ? ORDER BY seq",
                                  (_iso(since),)).fetchall()
        finally:
            src.close()
        if not patches:
            return
        conn = self._writer(path)
        try:
            for profile_id, traits, at in patches:
                _patch(conn, profile_id, json.loads(traits), dt.datetime.fromisoformat(at), record=True)
        finally:
            conn.close()

    def _swap(self, path: Path) -> None:
        tmp = self.folder / f".{POINTER}.{uuid.uuid4().hex}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(path.name)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.folder / POINTER)
        fsync_path(self.folder)

    def _cleanup(self) -> None:
        try:
            current = self.current().name
        except StoreMissing:
            return
        files = sorted(self.folder.glob("profiles-*.sqlite"), key=lambda p: p.name, reverse=True)
        keep = {current, *[p.name for p in files[: self.keep_files]]}
        for p in files:
            if p.name not in keep:
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(str(p) + suffix)

    def erase(self, profile_ids: Iterable[str], identifiers: Iterable[tuple[str, str]]) -> int:
        """Delete profiles (and their identifiers and patches) from **every** store file, overwriting the freed
        space (secure_delete) and truncating the WAL; returns the profile documents deleted."""
        pids = sorted(set(profile_ids))
        pairs = sorted(set(identifiers))
        deleted = 0
        with self._locked():
            for path in sorted(self.folder.glob("profiles-*.sqlite")):
                conn = self._writer(path)
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    extra = [r[0] for t, v in pairs for r in conn.execute(
                        "SELECT profile_id FROM identifiers WHERE id_type = ? AND value = ?", (t, v)).fetchall()]
                    targets = sorted(set(pids) | set(extra))
                    for pid in targets:
                        deleted += conn.execute("DELETE FROM profiles WHERE profile_id = ?", (pid,)).rowcount
                        conn.execute("DELETE FROM identifiers WHERE profile_id = ?", (pid,))
                        conn.execute("DELETE FROM patches WHERE profile_id = ?", (pid,))
                    conn.executemany("DELETE FROM identifiers WHERE id_type = ? AND value = ?", pairs)
                    conn.execute("COMMIT")
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    conn.close()
        return deleted


def _flush(conn: sqlite3.Connection, profiles: list, ids: list) -> None:  # type: ignore[type-arg]
    conn.executemany("INSERT OR REPLACE INTO profiles VALUES (?, ?)", profiles)
    conn.executemany("INSERT OR REPLACE INTO identifiers VALUES (?, ?, ?)", ids)
    profiles.clear()
    ids.clear()


def _patch(conn: sqlite3.Connection, profile_id: str, traits: dict[str, Any], at: dt.datetime, *,
           record: bool) -> dict[str, Any] | None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT doc FROM profiles WHERE profile_id = ?", (profile_id,)).fetchone()
        if row is None:
            conn.execute("ROLLBACK")
            return None
        doc = json.loads(row[0])
        doc.setdefault("traits", {}).update(traits)
        doc["updated_at"] = _iso(at)
        conn.execute("UPDATE profiles SET doc = ? WHERE profile_id = ?", (json.dumps(doc), profile_id))
        if record:
            conn.execute("INSERT INTO patches (profile_id, traits, at) VALUES (?, ?, ?)",
                         (profile_id, json.dumps(traits), _iso(at)))
        conn.execute("COMMIT")
        return doc
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat() if t.tzinfo else t.isoformat() + "+00:00"


# ---- building from the lake ----
def store_for(config: "CdpConfig") -> ServingStore:
    """The serving store of this config's org."""
    s = config.api.serving  # type: ignore[attr-defined]
    # SQLite needs a local disk: on an object-store lake, api.serving.path names a local folder.
    return ServingStore(local_path(s.folder(config.lake.root), "api.serving.path"), keep_files=s.keep_files)


def serving_rows(spark: "SparkSession", config: "CdpConfig", lake: "Lake", view: "DataFrame | None" = None) -> "DataFrame":
    """profile view (+ audience memberships) -> (profile_id, doc JSON, flat identifiers), without profiles that
    have an open erasure request."""
    from pyspark.sql import functions as F

    if view is None:
        from cdp_spark.profiles.view import profile_view

        view = profile_view(spark, config, lake)
    if "gold.audience_members" in lake.registry and lake.exists("gold.audience_members"):
        members = (lake.read("gold.audience_members").groupBy("profile_id").agg(F.sort_array(F.collect_list(
            F.struct("audience", "variant", "entered_at"))).alias("audiences")))
        view = view.join(members, "profile_id", "left")
    else:
        view = view.withColumn("audiences", F.lit(None).cast("array<struct<audience:string,variant:string,"
                                                               "entered_at:timestamp>>"))
    view = view.withColumn("audiences", F.coalesce("audiences", F.array().cast(view.schema["audiences"].dataType)))
    from cdp_spark.privacy.requests import open_profile_ids

    pending = open_profile_ids(config)
    if pending:
        view = view.where(~F.col("profile_id").isin(sorted(pending)))
    flat = F.flatten(F.transform(F.map_entries("identifiers"), lambda e: F.transform(
        F.coalesce(e["value"], F.array().cast("array<string>")), lambda v: F.concat(e["key"], F.lit(SEP), v))))
    return view.select("profile_id", F.to_json(F.struct(*[F.col(c) for c in view.columns]), {"ignoreNullFields": "false"}).alias("doc"),
                       flat.alias("ids"))


def refresh_serving_store(spark: "SparkSession", config: "CdpConfig", lake: "Lake",
                          view: "DataFrame | None" = None) -> dict[str, Any]:
    """Rebuild the serving store from the profile view and swap it in atomically (the `serve` stage, after the
    day's profiles, scores and audiences are written).

    Example:
        >>> refresh_serving_store(spark, config, lake)["profiles"]          # doctest: +SKIP
        2000
    """
    serving = config.api.serving  # type: ignore[attr-defined]
    store = store_for(config)
    started = dt.datetime.now(dt.timezone.utc)
    rows = serving_rows(spark, config, lake, view)
    count = {"n": 0}

    def stream() -> Iterator[tuple[str, str, list[str] | None]]:
        for r in rows.toLocalIterator(prefetchPartitions=True):
            count["n"] += 1
            yield r[0], r[1], r[2]

    path = store.build(stream(), meta={"org_id": config.org.id},
                       replay_since=started - dt.timedelta(minutes=serving.patch_replay_minutes))
    return {"profiles": count["n"], "file": path.name, "seconds": (dt.datetime.now(dt.timezone.utc) - started).total_seconds()}
