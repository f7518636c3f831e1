""":class:`MPClient`: a thin adapter over ``mp_api.client.MPRester``.

Searches always carry criteria (without them mp-api downloads whole collections from S3); id lists
are sent in chunks (long lists give HTTP 414, mp-api issue #655); 429 and 5xx answers and read
timeouts are retried with backoff, as are truncated bodies; a missing or rejected key is one
:class:`~screener.sources.mp.settings.MPAuthError`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

from screener.sources.mp.settings import (
    REDOX_METALS,
    MPAuthError,
    MPOptions,
    MPSourceError,
    config_path,
    is_framework,
)

log = logging.getLogger(__name__)


SUMMARY_LIST_FIELDS = ["material_id", "last_updated"]


SUMMARY_FULL_FIELDS = ["material_id", "last_updated", "formula_pretty", "elements", "nsites",
                       "energy_above_hull", "theoretical", "structure"]


ELECTRODE_FIELDS = ["id_discharge", "id_charge", "material_ids"]


T = TypeVar("T")


def chunks(seq: list[T], n: int) -> Iterator[list[T]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def stamp_text(value: Any) -> str:
    """A ``last_updated`` value as a string (ISO text, or Mongo's ``{"$date": ...}``)."""
    if isinstance(value, dict) and "$date" in value:
        value = value["$date"]
    return str(value) if value is not None else ""


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
        return {str(d["material_id"]): stamp_text(d.get("last_updated")) for d in docs}

    def list_frameworks(self, ion: str) -> dict[str, str]:
        """``{material_id: last_updated}`` of frameworks for ``ion``: no ``ion``, a redox-active
        transition metal and an anion, meeting the criteria (one search per metal)."""
        o = self.options
        out: dict[str, str] = {}
        for metal in REDOX_METALS:
            if metal == ion:
                continue
            docs = self._summary_search(
                f"listing {metal} frameworks for {ion}", elements=[metal], exclude_elements=[ion],
                energy_above_hull=(0.0, o.max_ehull), num_sites=(1, o.max_sites),
                theoretical=False if o.experimental_only else None, deprecated=False,
                fields=[*SUMMARY_LIST_FIELDS, "elements"], chunk_size=o.page_size)
            out.update({str(d["material_id"]): stamp_text(d.get("last_updated")) for d in docs
                        if is_framework({str(e) for e in d.get("elements") or []}, ion)})
        log.info("Materials Project: %d frameworks without %s (redox-active metal and anion)", len(out), ion)
        return out

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
        for chunk in chunks(ids, o.id_chunk):
            found = self._summary_search(
                f"listing {ion} electrode materials", material_ids=chunk, elements=[ion],
                num_sites=(1, o.max_sites), fields=SUMMARY_LIST_FIELDS, chunk_size=o.page_size)
            out.update({str(d["material_id"]): stamp_text(d.get("last_updated")) for d in found})
        return out

    def fetch(self, ids: list[str]) -> Iterator[list[dict[str, Any]]]:
        """Full summary documents (with structures) of ``ids``, one list per request of ``id_chunk`` ids.

        A generator, so that the caller can keep each chunk as it arrives: a download that fails
        half-way loses only the chunk in flight.
        """
        o = self.options
        n_chunks = -(-len(ids) // o.id_chunk)
        if ids:
            log.info("Materials Project: downloading %d structures in %d request(s) of <= %d ids",
                     len(ids), n_chunks, o.id_chunk)
        for i, chunk in enumerate(chunks(sorted(ids), o.id_chunk), 1):
            yield self._summary_search(f"downloading structures ({i}/{n_chunks})",
                                       material_ids=chunk, fields=SUMMARY_FULL_FIELDS,
                                       chunk_size=min(o.page_size, len(chunk)))
