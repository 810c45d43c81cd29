"""Prometheus metrics from ``Stats`` counters: a collector for ``prometheus_client``.

::

    stats = pyproxyproto.Stats()          # given to the servers as stats=
    pyproxyproto.prometheus.register(stats)

then every scrape of ``prometheus_client``'s registry (its ``/metrics``
endpoint, ``generate_latest()``) reads the counters at that instant:

- ``pyproxyproto_headers_accepted_total{version="1"|"2"}``
- ``pyproxyproto_local_headers_total``: v2 LOCAL headers (health checks)
- ``pyproxyproto_connections_skipped_total``: peers served without a header
- ``pyproxyproto_connections_refused_total{reason=...}``: ``untrusted``,
  ``invalid``, ``validator``, ``timeout``, ``closed_early``

With several ``Stats`` (one per server), give them names:
``register({"web": web_stats, "api": api_stats})`` adds a ``server`` label.
Install with ``pip install 'pyproxyproto[prometheus]'``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Union

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import REGISTRY, CollectorRegistry

from ._stats import Stats

__all__ = ["StatsCollector", "register"]

# Refusal counters, by the reason label they are reported under.
REFUSALS = {
    "untrusted": "rejected_untrusted",
    "invalid": "rejected_invalid",
    "validator": "rejected_by_validator",
    "timeout": "timed_out",
    "closed_early": "closed_early",
}

Many = Union[Stats, Mapping[str, Stats]]


class StatsCollector:
    """A ``prometheus_client`` collector reading one ``Stats``, or several by name."""

    def __init__(self, stats: Many) -> None:
        if isinstance(stats, Stats):
            self._stats: dict[str, Stats] = {"": stats}
        elif isinstance(stats, Mapping) and stats and all(
            isinstance(name, str) and name and isinstance(one, Stats) for name, one in stats.items()
        ):
            self._stats = dict(stats)
        else:
            raise TypeError(
                "StatsCollector takes a pyproxyproto.Stats, or a non-empty mapping of "
                f"server names to them, not {stats!r}"
            )

    def collect(self) -> Iterator[Metric]:
        named = "" not in self._stats
        server = ["server"] if named else []
        accepted = CounterMetricFamily(
            "pyproxyproto_headers_accepted", "PROXY headers accepted, by version",
            labels=[*server, "version"])
        local = CounterMetricFamily(
            "pyproxyproto_local_headers", "v2 LOCAL headers accepted (health checks)",
            labels=server)
        skipped = CounterMetricFamily(
            "pyproxyproto_connections_skipped", "peers served without a header (skip)",
            labels=server)
        refused = CounterMetricFamily(
            "pyproxyproto_connections_refused", "connections given up on, by reason",
            labels=[*server, "reason"])
        for name, stats in self._stats.items():
            counts = stats.as_dict()  # one instant for all of a server's counters
            labels = [name] if named else []
            accepted.add_metric([*labels, "1"], counts["accepted_v1"])
            accepted.add_metric([*labels, "2"], counts["accepted_v2"])
            local.add_metric(labels, counts["local"])
            skipped.add_metric(labels, counts["skipped"])
            for reason, counter in REFUSALS.items():
                refused.add_metric([*labels, reason], counts[counter])
        yield from (accepted, local, skipped, refused)


def register(stats: Many, registry: CollectorRegistry = REGISTRY) -> StatsCollector:
    """Register a ``StatsCollector`` for ``stats`` with ``registry``
    (prometheus_client's default one unless given); return it."""
    collector = StatsCollector(stats)
    registry.register(collector)
    return collector
