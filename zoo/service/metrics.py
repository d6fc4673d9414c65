"""Prometheus metrics of the service, in a registry per server (no global state).

Jobs by state are read from the job table at scrape time, so they count the
jobs of every worker; durations, conversions, cache hits and bytes served are
counted by this process (its local pool and its responses).
"""

from __future__ import annotations

from typing import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.process_collector import ProcessCollector

from zoo.service.execution import Outcome
from zoo.service.jobs import Job, JobService

_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


class _JobStates:
    def __init__(self, jobs: JobService) -> None:
        self.jobs = jobs

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("zoo_jobs", "Jobs in the job table, by state", labels=["state"])
        for state, count in self.jobs.counts().items():
            family.add_metric([state], count)
        yield family


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, jobs: JobService) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.registry.register(_JobStates(jobs))
        self.job_duration = Histogram("zoo_job_duration_seconds", "Wall time of job attempts run by this server",
                                      ["outcome"], buckets=_DURATION_BUCKETS, registry=self.registry)
        self.attempts = Counter("zoo_job_attempts", "Job processes started by this server", ["outcome"],
                                registry=self.registry)
        self.conversions = Counter("zoo_conversions", "Conversions run to a published artifact (not cache answers)",
                                   ["format"], registry=self.registry)
        self.cache_hits = Counter("zoo_cache_hits", "Job requests answered by an artifact already in the store",
                                  registry=self.registry)
        self.bytes_served = Counter("zoo_bytes_served", "Bytes of artifacts and mirrored files sent", ["kind"],
                                    registry=self.registry)

    def observe(self, job: Job, outcome: Outcome) -> None:
        self.attempts.labels(outcome.state).inc()
        self.job_duration.labels(outcome.state).observe(outcome.duration_s)
        if outcome.converted:
            self.conversions.labels(job.format).inc()
        elif outcome.state == "succeeded":
            self.cache_hits.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
