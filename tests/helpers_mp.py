"""A stand-in for the Materials Project API that the real ``mp-api`` client can talk to.

It serves the bundled hosts (``screener.sources.bundled.load_catalogue()``) under MP-like ids
(``mp-1001`` ...) over HTTP on 127.0.0.1, in mp-api's wire format:

- ``GET /heartbeat``: ``{"db_version", "version", "access_controlled_batch_ids"}`` (no key needed,
  like the real service; the client reads it when an ``MPRester`` is built).
- ``GET /materials/summary/``: filters ``elements``, ``exclude_elements``, ``material_ids``, ``energy_above_hull_min/max``,
  ``nsites_min/max``, ``theoretical``, ``deprecated``; projects ``_fields`` (all fields with
  ``_all_fields``); pages with ``_skip``/``_limit``; answers ``{"data": [...], "meta": {"total_doc": N}}``.
- ``GET /materials/insertion_electrodes/``: filter ``working_ion``; same paging and projection.

Data routes need an ``x-api-key`` header: none gives 401, an unknown key 403. Structures are
pymatgen dicts (``@module``/``@class``). URLs longer than ``max_url`` get 414 (mp-api issue #655).

Faults are queued with :meth:`StandIn.inject` and served by the next matching requests:
``429`` (with ``Retry-After: 0``), ``500``, ``503``, ``slow`` (answers after ``delay`` seconds),
``truncated`` (200 with half a JSON body), ``cut`` (connection closed mid-body), ``401``, ``403``.
Every request is logged in :attr:`StandIn.requests` (path, query, status; never the key).

Also here: :func:`no_internet`, which makes any connection to a non-loopback address fail.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

VALID_KEY = "sk-test-SECRET123" + "0" * 15  # 32 characters, as mp-api requires
DB_VERSION = "2025.09.25"


@dataclass
class Fault:
    """One injected fault: ``kind`` for the next ``times`` requests whose path starts with ``path``."""

    kind: str
    path: str = "/materials/"
    times: int = 1
    delay: float = 2.0
    skip: int = 0  # let this many matching requests through first
    downloads: bool = False  # only requests by material id


@dataclass
class Logged:
    """One request as the stand-in saw it."""

    path: str
    query: dict[str, str]
    status: int
    url_length: int
    fault: str = ""

    @property
    def ids(self) -> list[str]:
        """The material ids the request asked for."""
        v = self.query.get("material_ids", "")
        return v.split(",") if v else []


def _elements(structure) -> list[str]:
    return sorted({el.symbol for el in structure.composition.elements})


def catalogue_docs(ions: tuple[str, ...] | None = None, first_id: int = 1001,
                   only: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """Summary documents for the bundled hosts (all, or those of ``ions``), keyed by MP-like id.

    Every host gets ``energy_above_hull`` 0.0, except every 5th, which gets 0.15 eV/atom (above
    the default cut), and every 4th is ``theoretical``. ``only``: bundled ids to keep (all at
    0.0 eV/atom).
    """
    from screener.sources.bundled import load_catalogue

    docs = {}
    for i, rec in enumerate(load_catalogue()):
        mid = f"mp-{first_id + i}"
        if ions is not None and not set(rec.working_ions) & set(ions):
            continue
        if only is not None and rec.material_id not in only:
            continue
        docs[mid] = summary_doc(mid, rec.structure, ehull=0.15 if i % 5 == 4 and only is None else 0.0,
                                theoretical=i % 4 == 3, bundled_id=rec.material_id)
    return docs


def summary_doc(mid: str, structure, ehull: float = 0.0, theoretical: bool = False,
                last_updated: str = "2025-09-01T00:00:00", bundled_id: str = "") -> dict[str, Any]:
    """A summary document as the Materials Project serves it (the fields screener uses, and a few more)."""
    return {
        "material_id": mid,
        "formula_pretty": structure.composition.reduced_formula,
        "elements": _elements(structure),
        "nelements": len(structure.composition.elements),
        "chemsys": "-".join(_elements(structure)),
        "nsites": len(structure),
        "energy_above_hull": ehull,
        "theoretical": theoretical,
        "deprecated": False,
        "last_updated": last_updated,
        "structure": structure.as_dict(),
        "origins": [{"name": "bundled", "task_id": bundled_id}],
    }


class StandIn:
    """The stand-in server: start it, point ``MP_API_ENDPOINT`` at :attr:`endpoint`, stop it.

    Attributes:
        docs: summary documents by material id (edit them between runs).
        electrodes: insertion-electrode documents.
        db_version: what ``/heartbeat`` reports.
        keys: API keys accepted.
        max_url: longest request URL (path and query) served; longer ones get 414.
        requests: every request seen.
    """

    def __init__(self, docs: dict[str, dict[str, Any]] | None = None,
                 electrodes: list[dict[str, Any]] | None = None, max_url: int = 4000):
        self.docs = docs if docs is not None else catalogue_docs()
        self.electrodes = electrodes or []
        self.db_version = DB_VERSION
        self.keys = {VALID_KEY}
        self.max_url = max_url
        self.requests: list[Logged] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> StandIn:
        """Serve on an ephemeral port of 127.0.0.1 in a daemon thread."""
        standin = self

        class Handler(_Handler):
            server_state = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def endpoint(self) -> str:
        """Base URL, with the trailing slash mp-api expects."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    # ------------------------------------------------------------------ test helpers
    def inject(self, kind: str, path: str = "/materials/", times: int = 1, delay: float = 2.0,
               skip: int = 0, downloads: bool = False) -> None:
        """Queue a fault for the next ``times`` requests under ``path`` (by material id only, with
        ``downloads``), after letting ``skip`` of them through."""
        with self._lock:
            self.faults.append(Fault(kind, path, times, delay, skip, downloads))

    def data_requests(self, path: str = "/materials/") -> list[Logged]:
        """Logged requests under ``path``."""
        return [r for r in self.requests if r.path.startswith(path)]

    def clear_log(self) -> None:
        """Forget the logged requests."""
        with self._lock:
            self.requests.clear()

    def _take_fault(self, path: str, by_id: bool = False) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if path.startswith(f.path) and (by_id or not f.downloads):
                    if f.skip > 0:
                        f.skip -= 1
                        return None
                    f.times -= 1
                    if f.times <= 0:
                        self.faults.remove(f)
                    return f
        return None

    def _log(self, entry: Logged) -> None:
        with self._lock:
            self.requests.append(entry)


def _truthy(v: str) -> bool:
    return v.strip().lower() in {"true", "1", "yes"}


def _page(docs: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    skip = int(query.get("_skip", 0) or 0)
    limit = int(query.get("_limit", 100) or 100)
    if "_fields" in query and not _truthy(query.get("_all_fields", "false")):
        wanted = query["_fields"].split(",")
        docs = [{k: d[k] for k in wanted if k in d} for d in docs]
    return {"data": docs[skip: skip + limit],
            "meta": {"total_doc": len(docs), "max_limit": 1000, "api_version": "stand-in",
                     "time_stamp": "2025-09-25T00:00:00"}}


def _filter_summary(docs: list[dict[str, Any]], q: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    ids = set(q["material_ids"].split(",")) if q.get("material_ids") else None
    need = set(q["elements"].split(",")) if q.get("elements") else set()
    banned = set(q["exclude_elements"].split(",")) if q.get("exclude_elements") else set()
    for d in docs:
        if ids is not None and d["material_id"] not in ids:
            continue
        if need and not need <= set(d["elements"]):
            continue
        if banned & set(d["elements"]):
            continue
        if "theoretical" in q and d["theoretical"] != _truthy(q["theoretical"]):
            continue
        if "deprecated" in q and d["deprecated"] != _truthy(q["deprecated"]):
            continue
        ok = True
        for name in ("energy_above_hull", "nsites"):
            lo, hi = q.get(f"{name}_min"), q.get(f"{name}_max")
            if (lo is not None and d[name] < float(lo)) or (hi is not None and d[name] > float(hi)):
                ok = False
        if ok:
            out.append(d)
    return sorted(out, key=lambda d: d["material_id"])


class _Handler(BaseHTTPRequestHandler):
    server_state: StandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr logging
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
              declared_length: int | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(declared_length if declared_length is not None else len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. timed out): nothing to do

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        st = self.server_state
        parts = urlsplit(self.path)
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        entry = Logged(path=path, query=query, status=200, url_length=len(self.path))

        if path == "/heartbeat/":
            import emmet.core

            self._send(200, json.dumps({"db_version": st.db_version, "version": emmet.core.__version__,
                                        "access_controlled_batch_ids": []}).encode())
            st._log(entry)
            return
        if len(self.path) > st.max_url:
            entry.status = 414
            st._log(entry)
            self._send(414, b'{"detail": "URI Too Long"}')
            return
        key = self.headers.get("x-api-key")
        if not key:
            entry.status = 401
            st._log(entry)
            self._send(401, b'{"message": "No API key found in request"}')
            return
        if key not in st.keys:
            entry.status = 403
            st._log(entry)
            self._send(403, b'{"message": "Invalid authentication credentials"}')
            return

        if path == "/materials/summary/":
            body = _page(_filter_summary(list(st.docs.values()), query), query)
        elif path == "/materials/insertion_electrodes/":
            ions = set(query.get("working_ion", "").split(",")) - {""}
            docs = sorted((e for e in st.electrodes if not ions or e["working_ion"] in ions),
                          key=lambda e: e["battery_id"])
            body = _page(docs, query)
        else:
            entry.status = 404
            st._log(entry)
            self._send(404, b'{"detail": "Not Found"}')
            return
        payload = json.dumps(body).encode()

        fault = st._take_fault(path, by_id=bool(query.get("material_ids")))
        if fault is not None:
            entry.fault = fault.kind
            if fault.kind in {"429", "500", "503", "401", "403"}:
                entry.status = int(fault.kind)
                st._log(entry)
                headers = {"Retry-After": "0"} if fault.kind == "429" else {}
                self._send(int(fault.kind), b'{"detail": "injected fault"}', headers)
                return
            if fault.kind == "slow":
                st._log(entry)
                time.sleep(fault.delay)
                self._send(200, payload)
                return
            if fault.kind == "truncated":
                st._log(entry)
                self._send(200, payload[: len(payload) // 2])
                return
            if fault.kind == "cut":
                st._log(entry)
                self._send(200, payload[: len(payload) // 2], declared_length=len(payload))
                self.close_connection = True
                return
        st._log(entry)
        self._send(200, payload)


def electrode_docs(docs: dict[str, dict[str, Any]], ion: str, first_charge_id: int = 9001) -> tuple[
        list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Insertion-electrode documents pairing each host of ``ion`` with its charged (ion-free) end.

    Returns:
        The electrode documents and the summary documents of the charged materials (to be
        served too: they hold no working ion).
    """
    from pymatgen.core import Structure

    electrodes, charged = [], {}
    for i, (mid, d) in enumerate(sorted(docs.items())):
        if ion not in d["elements"]:
            continue
        cid = f"mp-{first_charge_id + i}"
        s = Structure.from_dict(d["structure"])
        s.remove_species([ion])
        charged[cid] = summary_doc(cid, s, ehull=0.3, theoretical=True)
        electrodes.append({
            "battery_id": f"{mid}_{ion}", "battery_type": "insertion", "working_ion": ion,
            "id_charge": cid, "id_discharge": mid, "material_ids": [cid, mid],
            "framework_formula": s.composition.reduced_formula, "last_updated": d["last_updated"],
            "host_structure": s.as_dict(),
        })
    return electrodes, charged


# ---------------------------------------------------------------------- fixtures
@pytest.fixture
def no_internet(monkeypatch):
    """Any connection (or name lookup) beyond the loopback interface fails at once."""
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def local(host: Any) -> bool:
        return str(host) in {"127.0.0.1", "localhost", "::1"} or str(host).startswith("/")

    def guarded_connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if not local(host):
            raise OSError(f"test guard: no internet (tried {host})")
        return real_connect(self, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host is not None and not local(host):
            raise socket.gaierror(f"test guard: no internet (tried to resolve {host})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    # Keep mp-api and pymatgen away from the real service and the user's settings.
    monkeypatch.setenv("MP_API_ENDPOINT", "http://127.0.0.1:9/")
    monkeypatch.delenv("PMG_MAPI_KEY", raising=False)
    monkeypatch.delenv("MP_API_KEY", raising=False)


