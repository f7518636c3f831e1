"""Settings of the Materials Project source: query options, the API key, the endpoint, the cache folder.

The API key comes from ``MP_API_KEY`` or ``mp_api_key`` in ``~/.config/screener/config.toml``
(``SCREENER_CONFIG`` names another file). It is handed to mp-api and to nothing else: it is never
logged, written or put in an error message. ``MP_API_ENDPOINT`` points the client elsewhere.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from screener.core.errors import ScreenerError
from screener.core.hashing import content_hash

DEFAULT_ENDPOINT = "https://api.materialsproject.org/"


class MPSourceError(ScreenerError):
    """The Materials Project could not be reached or answered with an error."""
    stage = "source"


class MPAuthError(MPSourceError):
    """The Materials Project API key is missing, malformed or rejected."""


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
        frameworks: also materials without the working ion that hold a redox-active transition
            metal (:data:`REDOX_METALS`) and an anion (:data:`FRAMEWORK_ANIONS`), with the same
            criteria: empty frameworks, screened with the ion inserted (``--sites voids``).
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
    frameworks: bool = False
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
                "insertion_electrodes": self.insertion_electrodes, "frameworks": self.frameworks}


#: Transition metals whose redox lets an empty framework take up the working ion (frameworks search).
REDOX_METALS = ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Nb", "Mo", "W")
#: Anions of a framework worth screening for insertion.
FRAMEWORK_ANIONS = ("O", "S", "Se", "F")


def is_framework(elements: set[str], ion: str) -> bool:
    """A material without ``ion`` that holds a redox-active metal and an anion."""
    return ion not in elements and bool(elements & set(REDOX_METALS)) and bool(elements & set(FRAMEWORK_ANIONS))


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


def default_cache_dir(endpoint: str = DEFAULT_ENDPOINT) -> Path:
    """``<user cache dir>/screener/mp`` (platformdirs when installed, else ``$XDG_CACHE_HOME`` or ``~/.cache``).

    An endpoint other than the public API (``MP_API_ENDPOINT``: a mirror, a test server) gets a
    folder of its own beneath it, so that its materials never mix with the public ones.
    """
    try:
        import platformdirs

        root = Path(platformdirs.user_cache_dir("screener")) / "mp"
    except ModuleNotFoundError:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base) / "screener" / "mp"
    if endpoint.rstrip("/") == DEFAULT_ENDPOINT.rstrip("/"):
        return root
    parts = urlsplit(endpoint)  # never a credential in a folder name
    where = f"{parts.hostname or 'local'}{f'-{parts.port}' if parts.port else ''}"
    digest = content_hash(f"{parts.scheme}://{where}{parts.path}")[:8]
    return root / "endpoints" / f"{re.sub(r'[^A-Za-z0-9.-]', '_', where)}-{digest}"


def endpoint_from_env() -> str:
    """``MP_API_ENDPOINT`` (with a trailing slash), else the public API."""
    ep = os.environ.get("MP_API_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
    return ep if ep.endswith("/") else ep + "/"
