"""One name for every source: ``bundled``, ``mp`` or a path."""

from __future__ import annotations

import logging
import os
from typing import Any

from screener.sources.base import Source
from screener.sources.bundled import BundledSource
from screener.sources.files import PathSource
from screener.sources.mp.settings import config_path, read_api_key
from screener.sources.mp.source import MPSource

log = logging.getLogger(__name__)


def make_source(spec: str | None, sites: str = "occupied", **options: Any) -> Source:
    """The source named by ``spec``: ``bundled``, ``mp`` or a path; None picks the default.

    The default is ``mp`` when an API key is set (``MP_API_KEY``, else ``mp_api_key`` in the
    config file: :func:`~screener.sources.mp.settings.read_api_key`), else ``bundled``; a
    one-line notice says which.

    Args:
        spec: ``bundled``, ``mp``, a path, or None.
        sites: ``voids`` makes the bundled catalogue offer its empty frameworks too, and the
            Materials Project search also frameworks without the ion (a redox-active metal and an
            anion); files are all read anyway (a file without the ion is screened with it inserted).
        options: settings of the Materials Project source (``max_ehull``, ``max_sites``,
            ``experimental_only``, ``insertion_electrodes``, ``cache``, ``offline``; see
            :class:`screener.sources.mp.settings.MPOptions`); other sources take none and ignore them.
    """
    if spec is None:
        if read_api_key():  # a config file that cannot be read: MPSourceError, before any work
            log.info("source: Materials Project (an API key is set: %s)",
                     "MP_API_KEY" if os.environ.get("MP_API_KEY", "").strip() else config_path())
            spec = "mp"
        else:
            log.info("source: bundled catalogue (set MP_API_KEY, or mp_api_key in %s, to screen the Materials "
                     "Project)", config_path())
            spec = "bundled"
    if spec == "mp":
        return MPSource.from_env(**options, frameworks=sites == "voids")
    flags = [k for k in ("offline", "insertion_electrodes", "experimental_only", "cache") if options.get(k)]
    if flags:
        log.warning("ignored for the %s source (Materials Project only): %s", spec,
                    ", ".join("--" + k.replace("_", "-") for k in flags))
    if spec == "bundled":
        return BundledSource(sites)
    return PathSource(spec)
