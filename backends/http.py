"""The one synchronous HTTP client of the runtime: JSON over a urllib3 pool.

:class:`JsonHttp` sends one request at a time to ``base_url`` (or to an absolute URL),
with default headers and a timeout (seconds, for the connection and for each read). It
never retries and never follows a redirect: a 3xx comes back as an answer. Every urllib3
or socket error (refused, reset, timed out, malformed URL, broken protocol) becomes
:class:`backends.errors.HttpUnavailable`; any answer, whatever its status, is a
:class:`Response`.

urllib3 rather than httpx: in ``bench/http_clients.py`` a request cost ``httpx.Client``
1.6-1.8x urllib3's CPU (0.51 ms against 0.29; this helper 0.30-0.34, JSON encoding
included).
The pool may be passed in and shared (urllib3 pool managers are thread-safe); one made
here is cleared by :meth:`JsonHttp.close`.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from .errors import HttpStatusError, HttpUnavailable

__all__ = ["JsonHttp", "Params", "Response"]

#: query or form parameters: a mapping, or pairs (a name may repeat)
Params = Mapping[str, Any] | Iterable[tuple[str, Any]]


@dataclass(frozen=True, slots=True)
class Response:
    """An answer: status, case-insensitive headers, and the body as bytes."""

    status: int
    headers: Mapping[str, str]
    data: bytes

    @property
    def ok(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.data.decode("utf-8", "replace")

    def raise_for_status(self) -> Response:
        """This answer if 2xx, else :class:`HttpStatusError`."""
        if not self.ok:
            raise HttpStatusError(self.status)
        return self

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` when it is not JSON."""
        return jsonlib.loads(self.data)


class JsonHttp:
    """Requests to ``base_url`` with ``headers`` on each, ``timeout`` seconds by default.

    ``pool`` is a ``urllib3.PoolManager`` to share (not closed here); without one, a pool
    of ``maxsize`` kept-alive connections per host is made and :meth:`close` clears it.
    """

    def __init__(
        self,
        base_url: str = "",
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
        pool: urllib3.PoolManager | None = None,
        maxsize: int = 4,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self.timeout = timeout
        self._owns_pool = pool is None
        self._pool = pool if pool is not None else urllib3.PoolManager(maxsize=maxsize)

    def __repr__(self) -> str:
        return f"JsonHttp({self.base_url!r})"

    def close(self) -> None:
        """Close the kept-alive connections if this object made their pool."""
        if self._owns_pool:
            self._pool.clear()

    def __enter__(self) -> JsonHttp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        """``path`` joined to the base URL; an absolute ``http(s)://`` URL as it is."""
        if path.startswith(("http://", "https://")) or not self.base_url:
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        form: Params | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        read: bool = True,
    ) -> Response:
        """Send one request and return its answer, whatever its status.

        The body is ``json`` (encoded compactly, ``Content-Type: application/json``), or
        ``form`` (URL-encoded), or ``content`` as given. ``params`` go in the query
        string. With ``read=False`` the answer's body is not read (``data`` is empty)
        and its connection is closed rather than kept. Raises :class:`HttpUnavailable`
        when no answer comes."""
        url = self.url(path)
        if params:
            url += ("&" if "?" in url else "?") + urlencode(_pairs(params), doseq=True)
        sent = {**self.headers, **(headers or {})}
        body = content
        if json is not None:
            body = jsonlib.dumps(json, separators=(",", ":")).encode()
            sent.setdefault("Content-Type", "application/json")
        elif form is not None:
            body = urlencode(_pairs(form), doseq=True).encode()
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
        seconds = self.timeout if timeout is None else timeout
        try:
            resp = self._pool.request(
                method,
                url,
                body=body,
                headers=sent,
                timeout=urllib3.Timeout(connect=seconds, read=seconds),
                retries=False,
                redirect=False,
                preload_content=read,
            )
            if not read:
                resp.close()
                resp.release_conn()
        except NewConnectionError as exc:  # a ConnectTimeoutError subclass, yet refused
            raise HttpUnavailable(f"no answer: {type(exc).__name__}") from exc
        except Urllib3Timeout as exc:
            raise HttpUnavailable(f"timed out after {seconds:g}s", timed_out=True) from exc
        except (HTTPError, OSError, ValueError) as exc:  # ValueError: a URL urllib3 refuses
            raise HttpUnavailable(f"no answer: {type(exc).__name__}") from exc
        return Response(resp.status, resp.headers, resp.data if read else b"")

    def get(self, path: str, **kwargs: Any) -> Response:
        """:meth:`request` with ``GET``."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Response:
        """:meth:`request` with ``POST``."""
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Response:
        """:meth:`request` with ``PUT``."""
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Response:
        """:meth:`request` with ``DELETE``."""
        return self.request("DELETE", path, **kwargs)


def _pairs(params: Params) -> list[tuple[str, Any]]:
    if isinstance(params, Mapping):
        return list(params.items())
    return list(params)
