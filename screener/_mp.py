"""The Materials Project as a source of hosts: ``mp-api`` with paging, retries and a local cache.

- :class:`MPClient`: a thin adapter over ``mp_api.client.MPRester``. Searches always carry
  criteria (without them mp-api downloads whole collections from S3); id lists are sent in chunks
  (long lists give HTTP 414, mp-api issue #655); 429 and 5xx answers and read timeouts are retried
  with backoff, as are truncated bodies; a missing or rejected key is one :class:`MPAuthError`.
- :class:`MPCache`: SQLite under ``--cache``: every material with its ``last_updated`` stamp, the
  database version it came from, a structure hash and the structure; and the ids each query
  (working ion + criteria) returned last time.
- :class:`MPSource`: the :class:`~screener._sources.Source` for ``--source mp``. :meth:`MPSource.sync`
  lists the ids and stamps of a working ion (a cheap search), diffs them against the cache, and
  downloads structures only for new or changed materials; ``offline`` screens the cache alone.

The API key comes from ``MP_API_KEY`` or ``mp_api_key`` in ``~/.config/screener/config.toml``
(``SCREENER_CONFIG`` names another file). It is handed to mp-api and to nothing else: it is never
logged, written or put in an error message. ``MP_API_ENDPOINT`` points the client elsewhere.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from screener._errors import ScreenerError
from screener._sources import HostItem

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://api.materialsproject.org/"
SUMMARY_LIST_FIELDS = ["material_id", "last_updated"]
SUMMARY_FULL_FIELDS = ["material_id", "last_updated", "formula_pretty", "elements", "nsites",
                       "energy_above_hull", "theoretical", "structure"]
ELECTRODE_FIELDS = ["id_discharge", "id_charge", "material_ids"]

T = TypeVar("T")


class MPSourceError(ScreenerError):
    """The Materials Project could not be reached or answered with an error."""

    stage = "source"


class MPAuthError(MPSourceError):
    """The Materials Project API key is missing, malformed or rejected."""


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class MPOptions:
    """Settings of the Materials Project source.

    Attributes:
        max_ehull: largest energy above the convex hull (eV/atom).
        max_sites: largest number of sites per cell.
        experimental_only: only materials with an ICSD entry (``theoretical=False``).
        insertion_electrodes: also take the materials of the insertion-electrode documents of the
            working ion (their discharged, ion-holding ends).
        cache: cache folder (None: :func:`default_cache_dir`).
        offline: screen from the cache alone, without contacting the Materials Project.
        timeout: seconds to wait for one answer.
        retries: retries per request (429, 5xx, timeouts, truncated bodies).
        backoff: backoff factor in seconds (doubles with each retry).
        id_chunk: material ids per request.
        page_size: documents per page.
    """

    max_ehull: float = 0.1
    max_sites: int = 150
    experimental_only: bool = False
    insertion_electrodes: bool = False
    cache: str | None = None
    offline: bool = False
    timeout: float = 30.0
    retries: int = 5
    backoff: float = 0.5
    id_chunk: int = 100
    page_size: int = 1000

    def __post_init__(self) -> None:
        if self.max_ehull < 0 or self.max_sites < 1:
            raise ValueError("--max-ehull must be >= 0 and --max-sites >= 1")
        if self.id_chunk < 1 or self.page_size < 1 or self.retries < 0 or self.timeout <= 0:
            raise ValueError("id_chunk, page_size and timeout must be positive, retries >= 0")

    def criteria(self) -> dict[str, Any]:
        """The criteria that decide which materials a query returns."""
        return {"max_ehull": self.max_ehull, "max_sites": self.max_sites,
                "experimental_only": self.experimental_only,
                "insertion_electrodes": self.insertion_electrodes}


def config_path() -> Path:
    """``$SCREENER_CONFIG``, else ``$XDG_CONFIG_HOME/screener/config.toml`` (``~/.config`` by default)."""
    env = os.environ.get("SCREENER_CONFIG")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "screener" / "config.toml"


def read_api_key() -> str | None:
    """The API key: ``MP_API_KEY``, else ``mp_api_key`` in the config file; None when neither is set."""
    key = os.environ.get("MP_API_KEY", "").strip()
    if key:
        return key
    path = config_path()
    if not path.is_file():
        return None
    import tomllib

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        # The parser's message names a line and column, never the file's content.
        raise MPSourceError(f"cannot read the config file {path}: {exc}") from None
    value = data.get("mp_api_key")
    if value is None:
        return None
    if not isinstance(value, str):
        raise MPSourceError(f"{path}: mp_api_key must be a string")
    return value.strip() or None


def default_cache_dir() -> Path:
    """``<user cache dir>/screener/mp`` (platformdirs when installed, else ``$XDG_CACHE_HOME`` or ``~/.cache``)."""
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("screener")) / "mp"
    except ModuleNotFoundError:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "screener" / "mp"


def endpoint_from_env() -> str:
    """``MP_API_ENDPOINT`` (with a trailing slash), else the public API."""
    ep = os.environ.get("MP_API_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
    return ep if ep.endswith("/") else ep + "/"


def _chunks(seq: list[T], n: int) -> Iterator[list[T]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def _stamp(value: Any) -> str:
    """A ``last_updated`` value as a string (ISO text, or Mongo's ``{"$date": ...}``)."""
    if isinstance(value, dict) and "$date" in value:
        value = value["$date"]
    return str(value) if value is not None else ""


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------- client
class MPClient:
    """mp-api's ``MPRester`` with chunked id lists, retries and clear errors.

    Attributes:
        endpoint: base URL of the API.
        retries_seen: one short reason per retried request (``HTTP 429``, ``ReadTimeoutError``...).
    """

    def __init__(self, api_key: str | None, endpoint: str, options: MPOptions):
        self._key = api_key
        self.endpoint = endpoint
        self.options = options
        self.retries_seen: list[str] = []
        self._rester: Any = None

    def __repr__(self) -> str:
        return f"MPClient({self.endpoint})"

    # ------------------------------------------------------------------ plumbing
    def _retry(self) -> Any:
        from urllib3.util.retry import Retry

        seen = self.retries_seen
        n = self.options.retries

        class LoggingRetry(Retry):
            def increment(self, method=None, url=None, response=None, error=None, _pool=None,
                          _stacktrace=None):
                new = super().increment(method, url, response, error, _pool, _stacktrace)
                if response is not None and response.status:
                    why = f"HTTP {response.status}"
                else:
                    why = type(error).__name__ if error is not None else "unknown"
                seen.append(why)
                log.warning("Materials Project: %s on %s; retry %d of %d", why,
                            urlsplit(url or "").path or "?", len(new.history), n)
                return new

        return LoggingRetry(total=n, connect=n, read=n, status=n, other=0,
                            status_forcelist=(429, 500, 502, 503, 504), allowed_methods=["GET"],
                            backoff_factor=self.options.backoff, backoff_max=60,
                            respect_retry_after_header=True, raise_on_status=True)

    def _mount(self, session: Any) -> None:
        from requests.adapters import HTTPAdapter

        adapter = HTTPAdapter(max_retries=self._retry())
        session.mount("http://", adapter)
        session.mount("https://", adapter)

    def _mpr(self) -> Any:
        if self._rester is not None:
            return self._rester
        if not self._key:
            raise MPAuthError(
                "no Materials Project API key: set MP_API_KEY or put mp_api_key = \"...\" in "
                f"{config_path()} (or use --offline to screen the cache)")
        import warnings

        import requests
        from mp_api.client import MPRester
        from mp_api.client.core import MPRestError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mpr = MPRester(api_key=self._key, endpoint=self.endpoint, use_document_model=False,
                               mute_progress_bars=True)
        except MPRestError as exc:
            if "32 characters" in str(exc):
                raise MPAuthError("the Materials Project API key is malformed (mp-api expects 32 "
                                  "characters): check MP_API_KEY or mp_api_key in "
                                  f"{config_path()}") from None
            raise self._error(exc, "connecting") from None
        except (requests.RequestException, ValueError, KeyError) as exc:
            raise MPSourceError(f"cannot reach the Materials Project at {self.endpoint}: "
                                f"{_one_line(self._redact(str(exc)))}; use --offline to screen the "
                                "cache") from None
        self._mount(mpr.session)
        for rester in (mpr.materials.summary, mpr.materials.insertion_electrodes):
            # Sub-resters come wrapped in mp-api's LazyImport; the timeout lives on the rester.
            try:
                (getattr(rester, "_obj", None) or rester).timeout = self.options.timeout
            except AttributeError:
                log.debug("cannot set the request timeout on %s: mp-api's default applies", type(rester).__name__)
        self._rester = mpr
        return mpr

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _error(self, exc: BaseException, what: str) -> MPSourceError:
        msg = _one_line(self._redact(str(exc)))
        m = re.search(r"status code (\d{3})", str(exc))
        status = int(m.group(1)) if m else None
        if status in (401, 403):
            return MPAuthError(f"the Materials Project rejected the API key (HTTP {status}) while "
                               f"{what}: check MP_API_KEY or mp_api_key in {config_path()}")
        if "Max retries exceeded" in msg or "too many" in msg:
            return MPSourceError(f"the Materials Project kept failing while {what} (gave up after "
                                 f"{self.options.retries} retries): {msg}")
        return MPSourceError(f"Materials Project error while {what}: {msg}")

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one mp-api call; retry what urllib3 cannot (truncated or broken bodies)."""
        import requests
        from mp_api.client.core import MPRestError

        attempts = self.options.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return fn()
            except json.JSONDecodeError as exc:  # orjson's error is a subclass
                why = f"truncated answer ({type(exc).__name__})"
            except MPRestError as exc:
                ctx = exc.__context__
                broken = isinstance(ctx, (requests.exceptions.ChunkedEncodingError,
                                          requests.exceptions.ContentDecodingError))
                if not broken:
                    raise self._error(exc, what) from None
                why = f"broken answer ({type(ctx).__name__})"
            if attempt == attempts:
                raise MPSourceError(f"the Materials Project kept failing while {what}: {why} "
                                    f"(gave up after {self.options.retries} retries)")
            delay = self.options.backoff * 2 ** (attempt - 1)
            self.retries_seen.append(why)
            log.warning("Materials Project: %s while %s; retry %d of %d in %.2fs", why, what, attempt,
                        self.options.retries, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ API
    def heartbeat(self) -> str:
        """The database version (``db_version`` of ``/heartbeat``); needs no key."""
        import requests

        with requests.Session() as s:
            self._mount(s)
            try:
                r = s.get(self.endpoint + "heartbeat", timeout=self.options.timeout)
                r.raise_for_status()
                return str(r.json()["db_version"])
            except (requests.RequestException, ValueError, KeyError) as exc:
                raise MPSourceError(f"cannot reach the Materials Project at {self.endpoint}: "
                                    f"{_one_line(self._redact(str(exc)))}; use --offline to screen "
                                    "the cache") from None

    def _summary_search(self, what: str, **criteria: Any) -> list[dict[str, Any]]:
        if not {k for k, v in criteria.items() if v is not None and k not in {"fields", "chunk_size"}}:
            raise ValueError("a Materials Project search needs criteria (else mp-api reads all of S3)")
        mpr = self._mpr()
        return self._call(what, lambda: mpr.materials.summary.search(**criteria))

    def list_materials(self, ion: str) -> dict[str, str]:
        """``{material_id: last_updated}`` of the materials holding ``ion`` that meet the criteria."""
        o = self.options
        docs = self._summary_search(
            f"listing {ion} materials", elements=[ion], energy_above_hull=(0.0, o.max_ehull),
            num_sites=(1, o.max_sites), theoretical=False if o.experimental_only else None,
            deprecated=False, fields=SUMMARY_LIST_FIELDS, chunk_size=o.page_size)
        return {str(d["material_id"]): _stamp(d.get("last_updated")) for d in docs}

    def list_electrode_materials(self, ion: str) -> dict[str, str]:
        """``{material_id: last_updated}`` of the ion-holding materials of ``ion``'s insertion electrodes."""
        o = self.options
        mpr = self._mpr()
        docs = self._call(f"listing {ion} insertion electrodes",
                          lambda: mpr.materials.insertion_electrodes.search(
                              working_ion=ion, fields=ELECTRODE_FIELDS, chunk_size=o.page_size))
        ids = sorted({str(i) for d in docs
                      for i in (d.get("id_discharge"), d.get("id_charge"), *(d.get("material_ids") or []))
                      if i})
        log.info("Materials Project: %d %s insertion electrodes name %d materials", len(docs), ion, len(ids))
        out: dict[str, str] = {}
        for chunk in _chunks(ids, o.id_chunk):
            found = self._summary_search(
                f"listing {ion} electrode materials", material_ids=chunk, elements=[ion],
                num_sites=(1, o.max_sites), fields=SUMMARY_LIST_FIELDS, chunk_size=o.page_size)
            out.update({str(d["material_id"]): _stamp(d.get("last_updated")) for d in found})
        return out

    def fetch(self, ids: list[str]) -> list[dict[str, Any]]:
        """Full summary documents (with structures) of ``ids``, ``id_chunk`` ids per request."""
        o = self.options
        out: list[dict[str, Any]] = []
        n_chunks = -(-len(ids) // o.id_chunk)
        if ids:
            log.info("Materials Project: downloading %d structures in %d request(s) of <= %d ids",
                     len(ids), n_chunks, o.id_chunk)
        for i, chunk in enumerate(_chunks(sorted(ids), o.id_chunk), 1):
            out.extend(self._summary_search(f"downloading structures ({i}/{n_chunks})",
                                            material_ids=chunk, fields=SUMMARY_FULL_FIELDS,
                                            chunk_size=min(o.page_size, len(chunk))))
        return out


# ----------------------------------------------------------------------------- cache
@dataclass(frozen=True)
class Member:
    """A material of a query: its stamp and the hash of its structure."""

    last_updated: str
    structure_hash: str


@dataclass
class Delta:
    """What changed for one working ion since the cache last saw its query.

    Attributes:
        ion: working ion.
        new, changed, unchanged, removed: material ids (``changed``: a new ``last_updated``).
        downloaded: structures downloaded.
        db_version: database version now; previous_db_version: when the query last ran.
        members: the query's materials now.
        offline: computed from the cache alone.
    """

    ion: str
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    downloaded: int = 0
    db_version: str | None = None
    previous_db_version: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    offline: bool = False

    def counts(self) -> dict[str, int]:
        """``new``, ``changed``, ``unchanged``, ``removed`` and ``downloaded`` counts."""
        return {"new": len(self.new), "changed": len(self.changed), "unchanged": len(self.unchanged),
                "removed": len(self.removed), "downloaded": self.downloaded}

    def describe(self) -> str:
        """One line: the counts and the database version."""
        c = self.counts()
        db = self.db_version or "unknown"
        if self.previous_db_version and self.previous_db_version != self.db_version:
            db = f"{self.previous_db_version} -> {db}"
        where = "cache only (offline)" if self.offline else f"{c['downloaded']} structures downloaded"
        return (f"{self.ion}: {c['new']} new, {c['changed']} changed, {c['unchanged']} unchanged, "
                f"{c['removed']} removed; {where}; database {db}")


def diff_members(ion: str, previous: dict[str, str], now: dict[str, str]) -> Delta:
    """Classify ids by comparing ``{id: last_updated}`` of the previous query with today's."""
    d = Delta(ion=ion)
    for mid in sorted(now):
        if mid not in previous:
            d.new.append(mid)
        elif previous[mid] != now[mid]:
            d.changed.append(mid)
        else:
            d.unchanged.append(mid)
    d.removed = sorted(set(previous) - set(now))
    return d


class MPCache:
    """SQLite cache of Materials Project documents and query results (``<dir>/mp.sqlite``).

    Nothing is written when nothing changed: a repeated run leaves the file untouched.
    """

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS materials (
        material_id TEXT PRIMARY KEY, last_updated TEXT NOT NULL, db_version TEXT,
        formula TEXT, elements TEXT, nsites INTEGER, energy_above_hull REAL, theoretical INTEGER,
        structure_hash TEXT NOT NULL, structure BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS queries (
        query TEXT PRIMARY KEY, ion TEXT NOT NULL, criteria TEXT NOT NULL, db_version TEXT);
    CREATE TABLE IF NOT EXISTS members (
        query TEXT NOT NULL, material_id TEXT NOT NULL, last_updated TEXT NOT NULL,
        PRIMARY KEY (query, material_id));
    """

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        self.path = self.root / "mp.sqlite"

    def exists(self) -> bool:
        """Whether the cache file exists."""
        return self.path.is_file()

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.root.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60)
        try:
            if not con.execute("SELECT 1 FROM sqlite_master WHERE name='members'").fetchone():
                con.executescript(self.SCHEMA)
            with con:  # one transaction: committed on success, rolled back on error
                yield con
        finally:
            con.close()

    def members(self, query: str) -> dict[str, str]:
        """``{material_id: last_updated}`` the query returned last time (empty if never run)."""
        if not self.exists():
            return {}
        with self._db() as con:
            return dict(con.execute("SELECT material_id, last_updated FROM members WHERE query=?", (query,)))

    def query_db_version(self, query: str) -> str | None:
        """Database version when the query last ran."""
        if not self.exists():
            return None
        with self._db() as con:
            row = con.execute("SELECT db_version FROM queries WHERE query=?", (query,)).fetchone()
        return row[0] if row else None

    def has_query(self, query: str) -> bool:
        """Whether the query ran before."""
        if not self.exists():
            return False
        with self._db() as con:
            return con.execute("SELECT 1 FROM queries WHERE query=?", (query,)).fetchone() is not None

    def stamps(self, ids: Iterable[str] | None = None) -> dict[str, Member]:
        """``{material_id: Member}`` of cached materials (all, or those of ``ids``)."""
        if not self.exists():
            return {}
        with self._db() as con:
            rows = con.execute("SELECT material_id, last_updated, structure_hash FROM materials").fetchall()
        want = set(ids) if ids is not None else None
        return {r[0]: Member(r[1], r[2]) for r in rows if want is None or r[0] in want}

    def put(self, docs: list[dict[str, Any]], db_version: str | None) -> None:
        """Insert or replace materials (each with ``structure`` already a Structure, ``structure_hash`` set)."""
        if not docs:
            return
        from monty.json import MontyEncoder

        rows = [(d["material_id"], d["last_updated"], db_version, d.get("formula", ""),
                 ",".join(d.get("elements") or []), d.get("nsites"), d.get("energy_above_hull"),
                 None if d.get("theoretical") is None else int(bool(d["theoretical"])),
                 d["structure_hash"], zlib.compress(json.dumps(d["structure"].as_dict(), cls=MontyEncoder).encode()))
                for d in docs]
        with self._db() as con:
            con.executemany("INSERT OR REPLACE INTO materials VALUES (?,?,?,?,?,?,?,?,?,?)", rows)

    def set_members(self, query: str, ion: str, criteria: dict[str, Any], db_version: str | None,
                    members: dict[str, str]) -> bool:
        """Record what the query returned; returns whether anything was written."""
        old = self.members(query)
        old_db = self.query_db_version(query)
        if self.has_query(query) and old == members and old_db == db_version:
            return False
        with self._db() as con:
            con.execute("INSERT OR REPLACE INTO queries VALUES (?,?,?,?)",
                        (query, ion, json.dumps(criteria, sort_keys=True), db_version))
            con.execute("DELETE FROM members WHERE query=?", (query,))
            con.executemany("INSERT INTO members VALUES (?,?,?)",
                            [(query, k, v) for k, v in sorted(members.items())])
        return True

    def local_members(self, ion: str, options: MPOptions) -> dict[str, str]:
        """``{material_id: last_updated}`` of cached materials that meet the summary criteria."""
        if not self.exists():
            return {}
        with self._db() as con:
            rows = con.execute("SELECT material_id, last_updated, elements, nsites, energy_above_hull, "
                               "theoretical FROM materials").fetchall()
        out = {}
        for mid, stamp, elements, nsites, ehull, theoretical in rows:
            if ion not in (elements or "").split(","):
                continue
            if nsites is not None and nsites > options.max_sites:
                continue
            if ehull is not None and ehull > options.max_ehull:
                continue
            if options.experimental_only and theoretical:
                continue
            out[mid] = stamp
        return out

    def load(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """``{material_id: {formula, last_updated, db_version, structure_hash, structure (dict)}}``."""
        want = sorted(set(ids))
        out: dict[str, dict[str, Any]] = {}
        if not want or not self.exists():
            return out
        with self._db() as con:
            for chunk in _chunks(want, 500):
                marks = ",".join("?" * len(chunk))
                for mid, stamp, dbv, formula, shash, blob in con.execute(
                        f"SELECT material_id, last_updated, db_version, formula, structure_hash, structure "
                        f"FROM materials WHERE material_id IN ({marks})", chunk):
                    out[mid] = {"last_updated": stamp, "db_version": dbv, "formula": formula,
                                "structure_hash": shash, "structure": blob}
        return out

    def latest_db_version(self) -> str | None:
        """The newest database version any query recorded."""
        if not self.exists():
            return None
        with self._db() as con:
            rows = [r[0] for r in con.execute("SELECT db_version FROM queries") if r[0]]
        return max(rows) if rows else None


# ----------------------------------------------------------------------------- source
class MPSource:
    """Materials Project hosts for a working ion, through the local cache.

    :meth:`fetch` (the Source protocol) syncs the cache and returns every current material;
    :meth:`sync` returns the :class:`Delta` and :meth:`items` the hosts of chosen ids, which is how
    incremental runs screen only what changed.
    """

    name = "mp"
    incremental = True

    def __init__(self, api_key: str | None = None, options: MPOptions | None = None,
                 endpoint: str | None = None):
        self.options = options or MPOptions()
        self.endpoint = endpoint or endpoint_from_env()
        self.cache = MPCache(self.options.cache or default_cache_dir())
        self.client = MPClient(api_key, self.endpoint, self.options)
        self._db_version: str | None = None
        self._deltas: dict[str, Delta] = {}

    def __repr__(self) -> str:
        return f"MPSource({self.endpoint}, cache={self.cache.root}, offline={self.options.offline})"

    @classmethod
    def from_env(cls, **options: Any) -> MPSource:
        """The source with the key from the environment or config file and ``options`` (see :class:`MPOptions`).

        Raises:
            MPAuthError: no key and not offline.
        """
        opts = MPOptions(**{k: v for k, v in options.items() if v is not None})
        key = None if opts.offline else read_api_key()
        if not opts.offline and not key:
            raise MPAuthError(
                "no Materials Project API key: set MP_API_KEY or put mp_api_key = \"...\" in "
                f"{config_path()} (or use --offline to screen the cache)")
        return cls(key, opts)

    def query_key(self, ion: str) -> str:
        """The cache's name for the query of ``ion`` with these criteria."""
        o = self.options
        return (f"{ion}|ehull<={o.max_ehull:g}|sites<={o.max_sites}|experimental={int(o.experimental_only)}"
                f"|electrodes={int(o.insertion_electrodes)}")

    def database_version(self) -> str | None:
        """``db_version`` of the API's heartbeat (offline: the newest one the cache recorded)."""
        if self._db_version is None:
            self._db_version = self.cache.latest_db_version() if self.options.offline else self.client.heartbeat()
        return self._db_version

    def sync(self, ion: str) -> Delta:
        """List the materials of ``ion``, diff them against the cache, download what is new or changed."""
        if ion in self._deltas:
            return self._deltas[ion]
        query = self.query_key(ion)
        previous = self.cache.members(query)
        prev_db = self.cache.query_db_version(query)
        if self.options.offline:
            delta = self._sync_offline(ion, query, previous, prev_db)
        else:
            delta = self._sync_online(ion, query, previous, prev_db)
        log.info("Materials Project %s", delta.describe())
        self._deltas[ion] = delta
        return delta

    def _sync_offline(self, ion: str, query: str, previous: dict[str, str], prev_db: str | None) -> Delta:
        if not self.cache.exists():
            raise MPSourceError(f"--offline: no Materials Project cache at {self.cache.root}; run once online")
        now = previous
        if not self.cache.has_query(query):
            now = self.cache.local_members(ion, self.options)
            log.warning("--offline: %s was never queried with these criteria; using the %d cached %s "
                        "materials that meet them%s", ion, len(now), ion,
                        " (insertion electrodes need an online run)" if self.options.insertion_electrodes else "")
        delta = diff_members(ion, now, now)
        stamps = self.cache.stamps(now)
        delta.members = {k: stamps[k] for k in now if k in stamps}
        delta.db_version = delta.previous_db_version = prev_db or self.cache.latest_db_version()
        delta.offline = True
        return delta

    def _sync_online(self, ion: str, query: str, previous: dict[str, str], prev_db: str | None) -> Delta:
        from pymatgen.core import Structure

        from screener._screen import structure_hash

        db_version = self.database_version()
        now = self.client.list_materials(ion)
        if self.options.insertion_electrodes:
            for mid, stamp in self.client.list_electrode_materials(ion).items():
                now.setdefault(mid, stamp)
        cached = self.cache.stamps(now)
        wanted = [m for m, stamp in now.items() if m not in cached or cached[m].last_updated != stamp]
        docs = []
        for d in self.client.fetch(wanted):
            mid = str(d["material_id"])
            try:
                s = Structure.from_dict(d["structure"])
            except Exception as exc:  # noqa: BLE001 - a bad record is skipped, not a crash
                log.warning("Materials Project: %s has no readable structure (%s); skipped", mid,
                            type(exc).__name__)
                continue
            docs.append({"material_id": mid, "last_updated": _stamp(d.get("last_updated")),
                         "formula": d.get("formula_pretty") or s.composition.reduced_formula,
                         "elements": [str(e) for e in d.get("elements") or []], "nsites": d.get("nsites"),
                         "energy_above_hull": d.get("energy_above_hull"),
                         "theoretical": d.get("theoretical"), "structure": s,
                         "structure_hash": structure_hash(s)})
        self.cache.put(docs, db_version)
        for d in docs:  # the document may have moved on since the listing: keep what we stored
            now[d["material_id"]] = d["last_updated"]
        missing = set(wanted) - {d["material_id"] for d in docs}
        for mid in missing:
            now.pop(mid, None)
        if missing:
            log.warning("Materials Project: %d listed materials could not be downloaded: %s", len(missing),
                        ", ".join(sorted(missing)[:10]))
        self.cache.set_members(query, ion, self.options.criteria(), db_version, now)
        delta = diff_members(ion, previous, now)
        stamps = self.cache.stamps(now)
        delta.members = {k: stamps[k] for k in sorted(now) if k in stamps}
        delta.downloaded = len(docs)
        delta.db_version, delta.previous_db_version = db_version, prev_db
        return delta

    def items(self, ion: str, ids: Iterable[str] | None = None) -> list[HostItem]:
        """Hosts of ``ion`` (all current members, or ``ids``) from the cache, sorted by id."""
        from pymatgen.core import Structure

        from screener._sources import StructureReadError

        delta = self.sync(ion)
        want = sorted(delta.members if ids is None else ids)
        rows = self.cache.load(want)
        out = []
        for mid in want:
            row = rows.get(mid)
            if row is None:
                out.append(HostItem(item=mid, structure=None, source=self.name,
                                    error=StructureReadError(f"{mid}: not in the Materials Project cache")))
                continue
            meta = {k: row[k] for k in ("last_updated", "db_version", "structure_hash")}
            try:
                s = Structure.from_dict(json.loads(zlib.decompress(row["structure"])))
            except Exception as exc:  # noqa: BLE001 - a damaged cache row becomes a failure row
                out.append(HostItem(item=mid, structure=None, source=self.name, formula=row["formula"] or "",
                                    error=StructureReadError(f"{mid}: cached structure unreadable: {exc}"),
                                    meta=meta))
                continue
            out.append(HostItem(item=mid, structure=s, source=self.name, formula=row["formula"] or "", meta=meta))
        return out

    def fetch(self, ion: str) -> list[HostItem]:
        """Every current material of ``ion`` (the cache is synced first)."""
        return self.items(ion)

    def deltas(self) -> dict[str, Delta]:
        """The deltas of the ions synced so far."""
        return dict(self._deltas)

    def describe_options(self) -> dict[str, Any]:
        """The settings for ``run.json`` (no key, no endpoint credentials)."""
        d = asdict(self.options)
        d["cache"] = str(self.cache.root)
        parts = urlsplit(self.endpoint)  # no user:password@, no query string
        d["endpoint"] = f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"
        return d
