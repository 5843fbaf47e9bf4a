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


def _plain(session_dir, certs, examples, name, password=None):
    """The SCRAM example with sasl.mechanisms=PLAIN, to the PLAIN listener."""
    text = _scram(session_dir, certs, examples, name, password, listener="PLAIN")
    text = text.replace("sasl.mechanisms=SCRAM-SHA-512\n", "sasl.mechanisms=PLAIN\n")
    assert "sasl.mechanisms=PLAIN\n" in text
    return text


# mechanism: (test case, listener, the broker's reason in its refusals, job-name prefix)
WRONG_PASSWORD = {
    "SCRAM-SHA-512": ("scram-wrong", "SCRAM", "invalid credentials with SASL mechanism SCRAM-SHA-512", "scramw-"),
    "PLAIN": ("plain-wrong", "PLAIN", "Invalid username or password", "plainw-"),
}


def _conf(mechanism, session_dir, certs, examples, name, password=None):
    build = _scram if mechanism == "SCRAM-SHA-512" else _plain
    return build(session_dir, certs, examples, name, password=password)


@pytest.mark.parametrize("mechanism", list(WRONG_PASSWORD))
def test_wrong_password_one_error_line_then_fixed(mechanism, release, session_dir, certs, examples, kafka, stack,
                                                  numbers):
    name, listener, reason, prefix = WRONG_PASSWORD[mechanism]
    wrong = f"not-the-{mechanism.lower()}-password-of-the-user"
    since_broker = kafka.log_size()
    c = start_cluster(stack, release, session_dir, name, _conf(mechanism, session_dir, certs, examples, name, wrong),
                      kafka=kafka, principal=_principal(examples))
    ids = c.run_jobs(N_JOBS, timeout=90, prefix=prefix)
    line = one_error_line(c, kafka, listener, r"error: .*SASL.*authentication.*check .*sasl\.username", 0, since_broker,
                          f"{mechanism}, wrong password")
    numbers(f"{mechanism} wrong password: {line.split('jobcomp/kafka: ', 1)[-1][:220]}")
    refused = kafka.refused_connections(since_broker, listener)
    assert all(reason in ln for ln in refused), refused[:3]
    assert wrong not in c.log_text()
    saved = dict(secured.saved_at_shutdown(c, ids))
    # The fix: docs/securing-kafka.md's password (the broker's PLAIN user has
    # it too), then slurmctld again.
    c.conf_text = _conf(mechanism, session_dir, certs, examples, name)
    c.write_kafka_conf()
    since_fix = kafka.log_size()
    c.start_ctld()
    msgs = kafka.read(c.finish_topic, expect=N_JOBS, linger=4)
    numbers(f"{mechanism} wrong password: after the fix: records expected={N_JOBS} received={len(msgs)}")
    secured.check_delivered(msgs, ids, prefix, saved)
    assert not kafka.refused_connections(since_fix, listener), "the broker refused the right password"
    assert secured.example_property(examples["scram"], "sasl.password") not in c.log_text()
