"""SCRAM-SHA-512 over TLS (SASL_SSL) between the plugin (in a real slurmctld
22.05.8) and Apache Kafka 4.x itself: docs/securing-kafka.md's SCRAM example, its user
made by the rig when the broker's storage is formatted (KIP-900).

- the example as written, and with SCRAM-SHA-256 (docs/securing-kafka.md: it works the
  same way; the rig makes the user for both): the broker accepts the login,
  every record delivered once (principal User:<sasl.username>, granted the
  docs' ACLs);
- a wrong password: the broker refuses every login (its log: "invalid
  credentials"), one error line in slurmctld's log while the broker refuses
  at least two attempts, the password never logged, nothing lost; after the
  password is fixed and slurmctld restarted, every record delivered once,
  byte for byte what was saved.

SASL PLAIN over TLS (the broker's users in its PLAIN listener's JAAS line,
docs/apache-kafka-security.md's block; the plugin: the SCRAM example with
sasl.mechanisms=PLAIN): a wrong password refused by the broker ("Invalid
username or password") with one error line, the password never logged,
nothing lost; after the fix the broker accepts the login and every record
is delivered once, byte for byte what was saved.
"""

import pytest

import secured
from secured import LISTENERS, lay_out_conf_dir, localize, one_error_line, start_cluster

N_JOBS = 5


def _scram(session_dir, certs, examples, name, password=None, listener="SCRAM"):
    conf_dir = session_dir / f"etc-{name}"
    lay_out_conf_dir(conf_dir, certs, {"ca.pem": "ca.pem"})
    text = localize(examples["scram"], f"127.0.0.1:{LISTENERS[listener]}", conf_dir)
    if password:
        right = secured.example_property(examples["scram"], "sasl.password")
        text = text.replace(f"sasl.password={right}\n", f"sasl.password={password}\n")
        assert f"sasl.password={password}\n" in text
    return text


def _principal(examples):
    return "User:" + secured.example_property(examples["scram"], "sasl.username")


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256"])
def test_scram_delivers_every_record(mechanism, release, session_dir, certs, examples, kafka, stack, numbers):
    name = "scram" if mechanism == "SCRAM-SHA-512" else "scram256"
    text = _scram(session_dir, certs, examples, name)
    # docs/securing-kafka.md names SCRAM-SHA-512 and says SCRAM-SHA-256 works the same way.
    text = text.replace("sasl.mechanisms=SCRAM-SHA-512\n", f"sasl.mechanisms={mechanism}\n")
    assert f"sasl.mechanisms={mechanism}\n" in text
    c = start_cluster(stack, release, session_dir, name, text, kafka=kafka, principal=_principal(examples))
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="scram-")
    msgs = kafka.read(c.finish_topic, expect=N_JOBS)
    numbers(f"{mechanism}: records expected={N_JOBS} received={len(msgs)}")
    secured.check_delivered(msgs, ids, "scram-")
    assert not [ln for ln in c.plugin_lines() if "error:" in ln]
    assert secured.example_property(examples["scram"], "sasl.password") not in c.log_text()


def test_scram_wrong_password_one_error_line_then_fixed(release, session_dir, certs, examples, kafka, stack, numbers):
    wrong = "not-the-password-of-the-user"
    since_broker = kafka.log_size()
    c = start_cluster(stack, release, session_dir, "scram-wrong",
                      _scram(session_dir, certs, examples, "scram-wrong", password=wrong),
                      kafka=kafka, principal=_principal(examples))
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="scramw-")
    line = one_error_line(c, kafka, "SCRAM", r"error: .*SASL.*authentication.*check .*sasl\.username", 0, since_broker,
                          "SCRAM-SHA-512, wrong password")
    numbers(f"SCRAM wrong password: {line.split('jobcomp/kafka: ', 1)[-1][:220]}")
    refused = kafka.refused_connections(since_broker, "SCRAM")
    assert all("invalid credentials with SASL mechanism SCRAM-SHA-512" in ln for ln in refused), refused[:3]
    assert wrong not in c.log_text()
    saved = dict(secured.saved_at_shutdown(c, ids))
    # The fix: docs/securing-kafka.md's password, then slurmctld again.
    c.conf_text = _scram(session_dir, certs, examples, "scram-wrong")
    c.write_kafka_conf()
    c.start_ctld()
    msgs = kafka.read(c.finish_topic, expect=N_JOBS, linger=4)
    numbers(f"SCRAM wrong password: after the fix: records expected={N_JOBS} received={len(msgs)}")
    secured.check_delivered(msgs, ids, "scramw-", saved)


def _plain(session_dir, certs, examples, name, password=None):
    """The SCRAM example with sasl.mechanisms=PLAIN, to the PLAIN listener."""
    text = _scram(session_dir, certs, examples, name, password, listener="PLAIN")
    text = text.replace("sasl.mechanisms=SCRAM-SHA-512\n", "sasl.mechanisms=PLAIN\n")
    assert "sasl.mechanisms=PLAIN\n" in text
    return text


def test_plain_wrong_password_one_error_line_then_fixed(release, session_dir, certs, examples, kafka, stack, numbers):
    wrong = "not-the-plain-password-of-the-user"
    since_broker = kafka.log_size()
    c = start_cluster(stack, release, session_dir, "plain-wrong",
                      _plain(session_dir, certs, examples, "plain-wrong", password=wrong),
                      kafka=kafka, principal=_principal(examples))
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="plainw-")
    line = one_error_line(c, kafka, "PLAIN", r"error: .*SASL.*authentication.*check .*sasl\.username", 0, since_broker,
                          "PLAIN, wrong password")
    numbers(f"PLAIN wrong password: {line.split('jobcomp/kafka: ', 1)[-1][:220]}")
    refused = kafka.refused_connections(since_broker, "PLAIN")
    assert all("Invalid username or password" in ln for ln in refused), refused[:3]
    assert wrong not in c.log_text()
    saved = dict(secured.saved_at_shutdown(c, ids))
    # The fix: the password of the broker's PLAIN user (the example's), then slurmctld again.
    c.conf_text = _plain(session_dir, certs, examples, "plain-wrong")
    c.write_kafka_conf()
    since_fix = kafka.log_size()
    c.start_ctld()
    msgs = kafka.read(c.finish_topic, expect=N_JOBS, linger=4)
    numbers(f"PLAIN wrong password: after the fix: records expected={N_JOBS} received={len(msgs)}")
    secured.check_delivered(msgs, ids, "plainw-", saved)
    assert not kafka.refused_connections(since_fix, "PLAIN"), "the broker refused the right password"
    assert secured.example_property(examples["scram"], "sasl.password") not in c.log_text()
