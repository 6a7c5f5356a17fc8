"""paywatch's silences mirrored into Alertmanager (API v2 ``/api/v2/silences``).

A silence made in the console or the CLI lives in ``alert_silences``; Alertmanager must
show the same alerts silenced, so its own routes and its UI agree with paywatch. The
mirror reconciles rather than replays events: at every sync it reads Alertmanager's
silences, creates the ones paywatch has (active or pending) and Alertmanager lacks, and
expires the ones paywatch has ended. That makes it idempotent, and an Alertmanager that
was down (logged) or restarted on an empty storage is brought level at the next sync.

Each mirrored silence carries its paywatch id in its comment (``[paywatch silence #N]``):
the link survives a worker restart with no extra table. Matchers are translated one to
one (``=``, ``!=``, ``=~``, ``!~``; both sides anchor regexes).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from backends.errors import HttpStatusError, HttpUnavailable
from backends.http import JsonHttp

from .notify import iso
from .silences import Silence, SilenceStore

log = logging.getLogger(__name__)

#: how a mirrored silence's comment names its paywatch silence
MARK = "[paywatch silence #{id}]"
_MARK = re.compile(r"\[paywatch silence #(\d+)\]\s*$")


def am_matchers(s: Silence) -> list[dict[str, Any]]:
    """``s``'s matchers in API v2 form (``isRegex``, ``isEqual``)."""
    out = [
        {"name": k, "value": v, "isRegex": False, "isEqual": True}
        for k, v in sorted(s.matchers.items())
    ]
    for m in s.extra:
        out.append(
            {"name": m.name, "value": m.value, "isRegex": "~" in m.op, "isEqual": m.op[0] == "="}
        )
    return out


def am_silence(s: Silence) -> dict[str, Any]:
    """The API v2 body that creates ``s`` in Alertmanager."""
    return {
        "matchers": am_matchers(s),
        "startsAt": iso(s.starts_at),
        "endsAt": iso(s.ends_at),
        "createdBy": s.creator,
        "comment": f"{s.comment} {MARK.format(id=s.id)}",
    }


def paywatch_id(am: dict[str, Any]) -> int | None:
    """The paywatch silence an Alertmanager silence mirrors, if it is one of ours."""
    m = _MARK.search(str(am.get("comment") or ""))
    return int(m.group(1)) if m else None


class SilenceMirror:
    """Keeps one Alertmanager's silences level with paywatch's (:meth:`sync`).

    ``ids`` maps a paywatch silence id to its Alertmanager silence id (as of the last
    sync); ``refused`` the paywatch silences Alertmanager would not take (a regex RE2
    cannot compile, say), which are tried again at the next full sync. Alertmanager is
    asked when paywatch's silences changed, else every ``interval`` seconds (to restore
    what a restart lost). ``client`` may be passed for tests, else one is made on use.
    """

    def __init__(
        self,
        base_url: str,
        silences: SilenceStore,
        *,
        interval: float = 60.0,
        timeout: float = 5.0,
        client: JsonHttp | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.silences = silences
        self.interval = interval
        self.timeout = timeout
        self._client = client
        self.ids: dict[int, str] = {}
        self.refused: dict[int, str] = {}
        self.last_error: str | None = None
        self._synced: tuple[float, frozenset] | None = None  # (when, what paywatch had)

    @property
    def client(self) -> JsonHttp:
        if self._client is None:
            self._client = JsonHttp(timeout=self.timeout)
        return self._client

    def wanted(self, now: float) -> list[Silence]:
        """paywatch's silences that have not ended (pending ones included)."""
        return [s for s in self.silences.all(limit=1000) if s.ends_at > now]

    def sync(self, now: float) -> bool:
        """Create and expire silences in Alertmanager; False if it could not be asked
        (logged once per distinct error), in which case the next sync tries again."""
        wanted = self.wanted(now)
        key = frozenset((s.id, s.starts_at, s.ends_at) for s in wanted)
        last = self._synced
        if last is not None and last[1] == key and now - last[0] < self.interval:
            return True
        try:
            self._sync(wanted)
        except (HttpUnavailable, HttpStatusError, ValueError, KeyError, TypeError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            if error != self.last_error:  # an outage is one line, not one per evaluation
                log.warning("alertmanager %s: silences not mirrored: %s", self.base_url, error)
            self.last_error, self._synced = error, None
            return False
        if self.last_error is not None:
            log.info("alertmanager %s: silences mirrored again", self.base_url)
        self.last_error, self._synced = None, (now, key)
        return True

    def _sync(self, wanted: Iterable[Silence]) -> None:
        resp = self.client.get(self.base_url + "/api/v2/silences").raise_for_status()
        ours: dict[int, str] = {}
        for am in resp.json():
            pid = paywatch_id(am)
            if pid is not None and am["status"]["state"] != "expired":
                ours[pid] = str(am["id"])
        want = {s.id: s for s in wanted}
        for pid, sid in ours.items():
            if pid not in want:
                self._expire(sid)
        self.ids = {pid: sid for pid, sid in ours.items() if pid in want}
        self.refused = {}
        for pid, s in want.items():
            if pid not in self.ids:
                self._create(s)

    def _create(self, s: Silence) -> None:
        resp = self.client.post(self.base_url + "/api/v2/silences", json=am_silence(s))
        if resp.status == 400:  # this silence only: the others are still mirrored
            self.refused[s.id] = resp.text.strip()[:200]
            log.warning(
                "alertmanager %s: silence %s refused: %s", self.base_url, s.id, self.refused[s.id]
            )
            return
        self.ids[s.id] = str(resp.raise_for_status().json()["silenceID"])
        log.info("alertmanager %s: silence %s mirrored as %s", self.base_url, s.id, self.ids[s.id])

    def _expire(self, sid: str) -> None:
        resp = self.client.delete(f"{self.base_url}/api/v2/silence/{sid}")
        if resp.status != 404:  # already gone: nothing to expire
            resp.raise_for_status()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
