"""Consumers of jobcomp/kafka's job records (docs/consumers.md):
jobcomp_kafka.wait (jobcomp-wait), jobcomp_kafka.sink (jobcomp-sink) and the
logic they share, jobcomp_kafka.records."""

__version__ = "0.1.0"
