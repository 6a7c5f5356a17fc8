"""The impact query in traffic: what one or several failed resources cost, and what is left.

:func:`stability.depmap.impact` follows the map's strong edges: a failed channel "fails"
``link.pay`` although the other pay orgs still work. Here a link's channels are
alternatives of each other (a payment goes through its trade's pay org): with some of
them down the link fails only for those orgs' traffic, and a merchant granted another
pay org that is up has somewhere to go. Any other failed dependency is followed as
:func:`~stability.depmap.impact` does (strong: the caller fails; weak: it degrades).

The traffic comes from the caller (the console reads it): per link and pay org, requests
per second (the core-link metrics); per pay org, the merchants that paid through it in the
window (the pay orders) and per merchant its granted pay orgs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from .depmap import DependencyMap, impact

__all__ = ["LinkImpact", "RecentTraffic", "RoutedTraffic", "traffic_impact"]

CHANNEL_KIND = "channel"
#: the one entry point whose pay org the routing rules choose
ROUTED_LINK = "link.pay"
#: what one request of a link is called, for the message
UNITS = {
    "link.pay": "payments/s",
    "link.refund": "refunds/s",
    "link.trade_create": "trades/s",
    "link.callback": "callbacks/s",
    "link.notify": "notifications/s",
}


@dataclass(frozen=True)
class RoutedTraffic:
    """What the routing rules did with payments lately and where else they could go.

    ``decisions``: rule -> the pay org it chose -> decisions in the window (rule
    ``"default"``: no rule matched, the trade's own org, no alternative);
    ``candidates``: rule -> every org the rule may send a payment to, in order (its
    targets, then its fallback list). A merchant's grants narrow a rule's candidates per
    payment; this view is per rule, so it is an upper bound for rules naming no merchant."""

    decisions: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    candidates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def alternatives(
        self, down: Iterable[str], usable: Iterable[str]
    ) -> tuple[float | None, tuple[str, ...] | None]:
        """(share of the decisions that chose a ``down`` org whose rule names a ``usable``
        org besides, None when no decision chose a down org; the usable orgs the rules
        naming a down org would fall back to, in rule order). No rule names a down org:
        ``(None, None)``, routing has nothing to say."""
        down_set, ok = set(down), set(usable) - set(down)
        hit = with_alt = 0.0
        orgs: dict[str, None] = {}
        named = False
        for rule, cands in sorted(self.candidates.items()):
            if not down_set & set(cands):
                continue
            named = True
            alts = [o for o in cands if o in ok]
            orgs.update(dict.fromkeys(alts))
            chosen = sum(v for o, v in self.decisions.get(rule, {}).items() if o in down_set)
            hit += chosen
            with_alt += chosen if alts else 0.0
        for rule, per_org in self.decisions.items():
            if rule not in self.candidates:  # "default" or a rule since removed
                hit += sum(v for o, v in per_org.items() if o in down_set)
        if not named:
            return None, None
        return (with_alt / hit if hit > 0 else None), tuple(orgs)


@dataclass(frozen=True)
class RecentTraffic:
    """What went through the platform lately (all figures over the same window).

    ``rates``: link -> pay org -> requests/s (pay org ``""``: not split by org);
    ``merchants``: pay org -> merchant -> payments in the window;
    ``grants``: merchant -> the pay orgs it is granted."""

    rates: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    merchants: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    grants: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: the routing rules' decisions and candidates (None: not known, not counted)
    routed: RoutedTraffic | None = None

    def rate(self, link: str, orgs: Iterable[str] | None = None) -> float | None:
        """Requests/s of ``link`` (through ``orgs`` only, if given); None if unknown."""
        per_org = self.rates.get(link)
        if not per_org:
            return None
        if orgs is None:
            return sum(per_org.values())
        wanted = set(orgs)
        if not wanted & set(per_org) and "" in per_org:
            return None  # the link's traffic is not split by pay org
        return sum(v for org, v in per_org.items() if org in wanted)

    def merchants_of(self, orgs: Iterable[str] | None = None) -> set[str]:
        """Merchants with payments through ``orgs`` (any org when None) in the window."""
        keys = self.merchants.keys() if orgs is None else orgs
        return {m for org in keys for m, n in self.merchants.get(org, {}).items() if n > 0}


@dataclass(frozen=True)
class LinkImpact:
    """One entry point (link or job) hit by the failure.

    ``effect``: ``fails`` (every request), ``partial`` (requests through ``orgs_down``),
    ``degrades`` (runs on a weak edge's fallback)."""

    link: str
    effect: str
    via: tuple[str, ...]
    orgs_down: tuple[str, ...] = ()
    orgs_total: int = 0
    rate_affected: float | None = None
    merchants_affected: int = 0
    merchants_with_alternative: int = 0
    #: weak dependencies among the failed whose fallback a partly failing link runs on too
    degraded_via: tuple[str, ...] = ()
    #: ``link.pay`` with routing known: the share of its routed payments through the down
    #: orgs whose rule has another org that is up (None: none routed in the window) ...
    routed_share: float | None = None
    #: ... and the orgs those rules fall back to (None: routing not known)
    fallback_orgs: tuple[str, ...] | None = None

    @property
    def message(self) -> str:
        """One line for the on-call, e.g. ``link.pay: 1/3 pay orgs down (SANDBOX_A); 40.0
        payments/s across 12 merchants affected; 9 of them have another granted org``."""
        unit = UNITS.get(self.link, "requests/s")
        rate = "" if self.rate_affected is None else f"{self.rate_affected:.1f} {unit}"
        if self.effect == "degrades":
            tail = f"; {rate} run on the fallback" if rate else ""
            return f"{self.link}: degrades (via {', '.join(self.via)}){tail}"
        if self.effect == "partial":
            orgs = ", ".join(self.orgs_down)
            head = f"{len(self.orgs_down)}/{self.orgs_total} pay orgs down ({orgs})"
        else:
            head = f"fails (via {', '.join(self.via)})"
        who = f"{self.merchants_affected} merchants affected"
        parts = [f"{self.link}: {head}", f"{rate} across {who}" if rate else who]
        if self.effect == "partial" and self.merchants_affected:
            parts.append(f"{self.merchants_with_alternative} of them have another granted org")
        if self.degraded_via:
            parts.append(f"degrades (via {', '.join(self.degraded_via)})")
        if self.fallback_orgs is not None:
            parts.append(self._routing())
        return "; ".join(parts)

    def _routing(self) -> str:
        orgs = ", ".join(self.fallback_orgs or ()) or "no other org"
        if self.routed_share is None:
            return f"routing falls back to {orgs} (no routed payments in the window)"
        return (
            f"{100 * self.routed_share:.0f}% of its routed payments have an alternative "
            f"org (routing falls back to {orgs})"
        )


def _org(dmap: DependencyMap, name: str) -> str | None:
    r = dmap.resource(name)
    if r.kind != CHANNEL_KIND:
        return None
    return name.split(".", 1)[1] if "." in name else name


def _channels(dmap: DependencyMap, caller: str) -> dict[str, str]:
    """The caller's strong channel edges: resource -> pay org."""
    out = {}
    for e in dmap.out_edges(caller):
        org = _org(dmap, e.callee)
        if org is not None and e.grade == "strong":
            out[e.callee] = org
    return out


def _structural(
    dmap: DependencyMap, failed: set[str]
) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Every resource failing / degrading because of ``failed``, with the causes."""
    fails: dict[str, set[str]] = {}
    degrades: dict[str, set[str]] = {}
    for name in sorted(failed):
        imp = impact(dmap, name)
        for n in imp.fails:
            fails.setdefault(n, set()).add(name)
        for n in imp.degrades:
            degrades.setdefault(n, set()).add(name)
        fails.setdefault(name, set()).add(name)
    return fails, degrades


def _whole_links(
    dmap: DependencyMap, failed: set[str], channels_down: set[str]
) -> tuple[set[str], dict[str, dict[str, str]]]:
    """Resources down as a whole (failed non-channels, callers left with no channel), and
    per caller the channels it lost while keeping others."""
    whole = {n for n in failed if n not in channels_down}
    partial: dict[str, dict[str, str]] = {}
    for caller in {c for ch in channels_down for c in dmap.callers(ch)}:
        mine = _channels(dmap, caller)
        lost = {ch: org for ch, org in mine.items() if ch in channels_down}
        if not lost:
            continue
        if len(lost) == len(mine):
            whole.add(caller)
        else:
            partial[caller] = lost
    return whole, partial


def traffic_impact(
    dmap: DependencyMap,
    failed: Iterable[str],
    traffic: RecentTraffic,
    *,
    unhealthy: Iterable[str] = (),
) -> list[LinkImpact]:
    """The entry points (links, jobs: nobody calls them) hit when ``failed`` fail at once,
    sorted by name. ``unhealthy``: resources down already (breaker open, failing), never
    counted as a merchant's alternative."""
    failed_set = set(failed)
    for name in failed_set:
        dmap.resource(name)  # UnknownResource for a name not on the map
    channels_down = {n for n in failed_set if _org(dmap, n) is not None}
    whole, partial = _whole_links(dmap, failed_set, channels_down)
    fails, degrades = _structural(dmap, whole)
    unavailable = failed_set | set(unhealthy)
    out = []
    for entry in dmap.roots():
        if entry in fails:
            causes = fails[entry] - {entry} or channels_down & set(dmap.callees(entry))
            merchants = traffic.merchants_of()
            out.append(
                LinkImpact(
                    entry,
                    "fails",
                    tuple(sorted(causes or {entry})),
                    rate_affected=traffic.rate(entry),
                    merchants_affected=len(merchants),
                )
            )
        elif entry in partial:
            hit = _partial(dmap, entry, partial[entry], traffic, unavailable)
            out.append(replace(hit, degraded_via=tuple(sorted(degrades.get(entry, ())))))
        elif entry in degrades:
            out.append(
                LinkImpact(
                    entry,
                    "degrades",
                    tuple(sorted(degrades[entry])),
                    rate_affected=traffic.rate(entry),
                    merchants_affected=len(traffic.merchants_of()),
                )
            )
    return out


def _partial(
    dmap: DependencyMap,
    entry: str,
    lost: Mapping[str, str],
    traffic: RecentTraffic,
    unavailable: set[str],
) -> LinkImpact:
    mine = _channels(dmap, entry)
    down = sorted(set(lost.values()))
    usable = {org for ch, org in mine.items() if ch not in unavailable}
    affected = traffic.merchants_of(down)
    alternative = {m for m in affected if traffic.grants.get(m, frozenset()) & usable}
    share, fallback = None, None
    if entry == ROUTED_LINK and traffic.routed is not None:
        share, fallback = traffic.routed.alternatives(down, usable)
    return LinkImpact(
        entry,
        "partial",
        tuple(sorted(lost)),
        tuple(down),
        len(mine),
        traffic.rate(entry, down),
        len(affected),
        len(alternative),
        routed_share=share,
        fallback_orgs=fallback,
    )
