"""Authorization by Apache Kafka 4.x itself (KRaft's StandardAuthorizer,
super.users for the broker only): the plugin (in a real slurmctld 22.05.8,
docs/securing-kafka.md's SCRAM example, its defaults: idempotence on) with exactly the
ACLs docs/apache-kafka-security.md tells a site to grant.

Two runs, each with a SCRAM principal of its own.

Missing WRITE on the topic: the plugin starts without the ACL on its topic
(the docs' ACL was granted for another topic name, as when JobCompParams
topic= and the ACL disagree); the broker denies its records (its authorizer
log: WRITE denied to the principal on the topic, at least twice);
slurmctld's log has ONE error line naming the topic, the principal as
JobCompLoc configures it and the missing WRITE; nothing reaches the topic.
Then the doc's kafka-acls command, run verbatim (host, port, directory and
topic replaced), and without any restart every record is delivered once.

No ACL at all: the broker refuses the idempotent producer's id
(InitProducerId: CLUSTER_AUTHORIZATION_FAILED), which librdkafka makes a
fatal error of the producer. slurmctld's log has ONE error line naming the
principal and the missing WRITE, still one after 75 s in which the plugin
makes a new producer once a minute (at least two denials in the broker's
log); once the ACL is granted, every record is delivered once by the new
producer, without a slurmctld restart.

A prefixed ACL and a wildcard ACL (the docs' other two kafka-acls commands,
run verbatim for a principal of their own that has no other ACL): granted
before slurmctld starts, each lets the idempotent producer get its id and
write; every record delivered once, no error line.
"""

import re
import time

import secured
from secured import LISTENERS, jk, lay_out_conf_dir, localize, start_cluster

N_JOBS = 5


def _run_doc_acls(kafka, block, topic, numbers, principal=None):
    """docs/apache-kafka-security.md's kafka-acls block `block`, run verbatim
    (secured.run_doc_tool_block), with `principal` in place of the doc's
    User:slurm-jobcomp."""
    replace = [(" --allow-principal User:slurm-jobcomp ", f" --allow-principal {principal} ")] if principal else []
    argv, out = secured.run_doc_tool_block(kafka, "kafka-acls", block, replace, topic=topic)
    numbers(f"kafka-acls {' '.join(argv[1:])}: {out.strip().splitlines()[-1][:160] if out.strip() else ''}")
    return argv


def _own_scram_user(kafka, session_dir, certs, examples, name, user, password, numbers):
    """A SCRAM-SHA-512 user of its own, made on the running broker with no
    ACL by the docs' kafka-configs command ("scram-user"); returns the docs'
    SCRAM example with its name and password."""
    # docs/apache-kafka-security.md's kafka-configs block, verbatim.
    _, out = secured.run_doc_tool_block(kafka, "kafka-configs", "scram-user", [
        (" --entity-name slurm-jobcomp ", f" --entity-name {user} "),
        ("[password=change-me]", f"[password={password}]")])
    numbers(f"kafka-configs (the docs' scram-user block) for {user}: {out.strip().splitlines()[-1][:160] if out.strip() else ''}")
    text = examples["scram"]
    conf_dir = session_dir / f"etc-{name}"
    lay_out_conf_dir(conf_dir, certs, {"ca.pem": "ca.pem"})
    local = localize(text, f"127.0.0.1:{LISTENERS['SCRAM']}", conf_dir)
    for key, value in (("sasl.username", user), ("sasl.password", password)):
        old = f"{key}={secured.example_property(text, key)}\n"
        assert old in local
        local = local.replace(old, f"{key}={value}\n")
    return local


def test_acl_missing_write_one_error_line_then_granted_without_restart(release, session_dir, certs, examples, kafka,
                                                                        stack, numbers):
    text = examples["scram"]
    user = secured.example_property(text, "sasl.username")
    conf_dir = session_dir / "etc-acl"
    lay_out_conf_dir(conf_dir, certs, {"ca.pem": "ca.pem"})
    since_broker = kafka.log_size()
    # The topic exists; the docs' ACL for the plugin's principal is on another
    # topic name only.
    kafka.grant(f"User:{user}", "jk-sec-acl-elsewhere")
    c = start_cluster(stack, release, session_dir, "acl", localize(text, f"127.0.0.1:{LISTENERS['SCRAM']}", conf_dir),
                      kafka=kafka, principal=None)
    topic = c.finish_topic
    ctld_pid = c.ctld_pid()
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="acl-")

    def denied_lines():
        return [ln for ln in c.plugin_lines() if re.search(
            rf"error: .*topic {re.escape(topic)}: .*denies WRITE .*\(sasl\.username={re.escape(user)}\)", ln)]

    jk.wait_for(denied_lines, 90, "the error line of the missing ACL")
    time.sleep(secured.WATCH_S)
    denials = kafka.log_lines(since_broker, rf"Principal = User:{re.escape(user)} is Denied [Oo]peration = (WRITE|DESCRIBE)"
                                            rf" .*resource = Topic:LITERAL:{re.escape(topic)}")
    errors = [ln for ln in c.plugin_lines() if re.search(r"\berror: ", ln)]
    numbers(f"no ACL: broker denials={len(denials)}; {len(errors)} error line(s): "
            f"{errors[0].split('jobcomp/kafka: ', 1)[-1][:260] if errors else None}")
    assert len(denials) >= 2, f"the broker denied {len(denials)} request(s): the window proves no flood"
    assert len(denied_lines()) == 1 and len(errors) == 1, "\n".join(errors[:20])
    assert kafka.read(topic, expect=1, timeout=10, linger=0) == [], "records reached the topic without the ACL"

    # The doc's command, verbatim (its bootstrap, directory and topic replaced).
    _run_doc_acls(kafka, "plugin", topic, numbers)
    # No restart: the kept records are retried and delivered, once each.
    msgs = kafka.read(topic, expect=N_JOBS, timeout=150, linger=4)
    numbers(f"after the ACL: records expected={N_JOBS} received={len(msgs)}")
    secured.check_delivered(msgs, ids, "acl-")
    assert c.ctld_pid() == ctld_pid, "slurmctld was restarted"


def test_acl_none_at_all_fatal_producer_renewed_without_restart(release, session_dir, certs, examples, kafka, stack,
                                                                 numbers):
    """A principal with no ACL at all: the broker refuses the idempotent
    producer's id (InitProducerId, cluster authorization), a fatal error of
    librdkafka's producer. One error line naming the principal and the
    missing WRITE, while a new producer is tried once a minute (75 s watched,
    at least two denials in the broker's log, still one line); once the
    docs' ACL is added, every record delivered once, without a restart (the
    first producer can deliver nothing more: the new one does)."""
    user = "slurm-noacl"
    local = _own_scram_user(kafka, session_dir, certs, examples, "acl-none", user, "no-acl-anywhere-password", numbers)
    since_broker = kafka.log_size()
    c = start_cluster(stack, release, session_dir, "acl-none", local, kafka=kafka, principal=None)
    topic = c.finish_topic
    ctld_pid = c.ctld_pid()
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="aclnone-")

    def fatal_lines():
        return [ln for ln in c.plugin_lines() if re.search(
            rf"error: .*\(sasl\.username={re.escape(user)}\) an idempotent producer: it has WRITE on no topic", ln)]

    jk.wait_for(fatal_lines, 90, "the error line of a principal without any ACL")

    # librdkafka's producer is dead after the fatal error; the plugin makes a
    # new one a minute later, which meets the same denials: still one line.
    time.sleep(75)
    denials = kafka.log_lines(since_broker, rf"Principal = User:{re.escape(user)} is Denied [Oo]peration = .*"
                                            rf"resource = Topic:LITERAL:{re.escape(topic)}")
    errors = [ln for ln in c.plugin_lines() if re.search(r"\berror: ", ln)]
    numbers(f"no ACL at all: broker denials on the topic={len(denials)}; {len(errors)} error line(s): "
            f"{errors[0].split('jobcomp/kafka: ', 1)[-1][:300] if errors else None}")
    assert len(denials) >= 2, f"the broker denied {len(denials)} request(s): the window proves no flood"
    assert len(fatal_lines()) == 1 and len(errors) == 1, "\n".join(errors[:20])
    # Delivery now needs a working producer: the first one is dead for good.
    kafka.grant(f"User:{user}", topic)
    msgs = kafka.read(topic, expect=N_JOBS, timeout=150, linger=4)
    numbers(f"no ACL at all, after the ACL: records expected={N_JOBS} received={len(msgs)}")
    secured.check_delivered(msgs, ids, "aclnone-")
    assert c.ctld_pid() == ctld_pid, "slurmctld was restarted"


def test_acl_prefixed_pattern_delivers_with_idempotence(release, session_dir, certs, examples, kafka, stack, numbers):
    """The docs' prefixed ACL (--resource-pattern-type prefixed), its prefix
    strictly shorter than the topic's name, is all the principal has: the
    idempotent producer gets its id and every record is delivered once,
    with no error line."""
    user = "slurm-prefixed"
    local = _own_scram_user(kafka, session_dir, certs, examples, "acl-prefixed", user, "prefixed-acl-password", numbers)
    topic = "jk-sec-acl-prefixed"  # start_cluster's topic for "acl-prefixed"
    prefix = "jk-sec-acl-prefix"
    argv = _run_doc_acls(kafka, "plugin-prefixed", prefix, numbers, principal=f"User:{user}")
    assert ["--resource-pattern-type", "prefixed"] == argv[argv.index("--resource-pattern-type"):][:2], argv
    c = start_cluster(stack, release, session_dir, "acl-prefixed", local, kafka=kafka, principal=None)
    assert c.finish_topic == topic and topic != prefix and topic.startswith(prefix)
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="aclpfx-")
    msgs = kafka.read(topic, expect=N_JOBS, timeout=120)
    numbers(f"prefixed ACL on {prefix!r}: records expected={N_JOBS} received={len(msgs)}")
    secured.check_delivered(msgs, ids, "aclpfx-")
    assert not [ln for ln in c.plugin_lines() if re.search(r"\berror: ", ln)]


def test_acl_wildcard_topic_delivers_with_idempotence(release, session_dir, certs, examples, kafka, stack, numbers):
    """The docs' wildcard ACL (--topic '*') is all the principal has: the
    idempotent producer gets its id and every record is delivered once,
    with no error line."""
    user = "slurm-wildcard"
    local = _own_scram_user(kafka, session_dir, certs, examples, "acl-wildcard", user, "wildcard-acl-password", numbers)
    argv = _run_doc_acls(kafka, "plugin-wildcard", None, numbers, principal=f"User:{user}")
    assert argv[argv.index("--topic") + 1] == "*", argv
    c = start_cluster(stack, release, session_dir, "acl-wildcard", local, kafka=kafka, principal=None)
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="aclwild-")
    msgs = kafka.read(c.finish_topic, expect=N_JOBS, timeout=120)
    numbers(f"wildcard ACL: records expected={N_JOBS} received={len(msgs)}")
    secured.check_delivered(msgs, ids, "aclwild-")
    assert not [ln for ln in c.plugin_lines() if re.search(r"\berror: ", ln)]
