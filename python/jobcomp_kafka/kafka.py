"""Kafka client settings shared by jobcomp-wait and jobcomp-sink."""

import os


def read_properties(path):
    """A librdkafka properties file (the plugin's JobCompLoc format: key=value
    lines, '#' comments) -> dict. JobCompLoc's own keys that are not
    librdkafka properties are the caller's business."""
    out = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise ValueError(f"{path}:{n}: not key=value: {line!r}")
            out[key.strip()] = value.strip()
    return out


def client_config(bootstrap=None, config_file=None, props=()):
    """librdkafka settings from --config FILE, then -X key=value, then
    --bootstrap (later wins); JOBCOMP_KAFKA_BOOTSTRAP when none names the
    brokers."""
    conf = {}
    if config_file:
        conf.update(read_properties(config_file))
    for kv in props:
        key, sep, value = kv.partition("=")
        if not sep:
            raise ValueError(f"-X {kv!r}: expected key=value")
        conf[key] = value
    if bootstrap:
        conf["bootstrap.servers"] = bootstrap
    if "bootstrap.servers" not in conf and os.environ.get("JOBCOMP_KAFKA_BOOTSTRAP"):
        conf["bootstrap.servers"] = os.environ["JOBCOMP_KAFKA_BOOTSTRAP"]
    if "bootstrap.servers" not in conf:
        raise ValueError("no brokers: give --bootstrap, bootstrap.servers in --config, or JOBCOMP_KAFKA_BOOTSTRAP")
    return conf


def add_client_args(p):
    p.add_argument("-b", "--bootstrap", help="brokers, host:port[,...] (or bootstrap.servers in --config, "
                                            "or JOBCOMP_KAFKA_BOOTSTRAP)")
    p.add_argument("--config", metavar="FILE",
                   help="librdkafka properties file (key=value lines, like the plugin's JobCompLoc)")
    p.add_argument("-X", dest="props", action="append", default=[], metavar="KEY=VALUE",
                   help="a librdkafka property (security.protocol, sasl.*, ssl.*, ...); repeatable")
    p.add_argument("--cluster", action="append", default=[], metavar="NAME",
                   help="read the cluster's topic (the plugin's default topic is the ClusterName); repeatable")
    p.add_argument("--topic", action="append", default=[], metavar="TOPIC[=CLUSTER]",
                   help="read this topic, its records belonging to CLUSTER (default: the topic's name); repeatable")
