"""SASL between the plugin (in a real slurmctld 22.05.8) and the brokers that
run here. What each supports (measured, see the closing notes of issue 10):

- tansu 0.6.0 with --authentication: SCRAM-SHA-256 and SCRAM-SHA-512 only
  (PLAIN: "NoSharedMechanism"), against credentials in its storage. With the
  in-memory storage (the only one this build of tansu has besides S3 and
  PostgreSQL) no credential can be stored before authentication is required:
  every SCRAM login is answered "unknown-user". So here: the README's SCRAM
  example (over TLS) reaches tansu's SCRAM exchange, is refused, gives one
  clear error line, and loses nothing.
- noida-db 0.2.3: PLAIN, accepting any password (it checks none); its SCRAM
  answer is malformed (no server nonce). So here: PLAIN handshake and
  delivery, every record.
- librdkafka's mock cluster: no SASL at all.
"""

import re
import time

import pytest

import secured
from secured import PORTS, TlsBroker, consume, jk, lay_out_conf_dir, localize, run, start_cluster

N_JOBS = 5


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256"])
def test_scram_refused_one_error_line_nothing_lost(mechanism, release, session_dir, certs, examples, stack, numbers):
    plain, tls = PORTS["scram"]["broker"]
    b = TlsBroker(session_dir / f"broker-{mechanism}", plain, tls, tansu_args=["--authentication"])
    stack.append(b)
    b.start_tansu()
    b.start_tls(certs / "server.pem", certs / "server.key")
    conf_dir = session_dir / f"etc-{mechanism}"
    lay_out_conf_dir(conf_dir, certs, {"ca.pem": "ca.pem"})
    text = localize(examples["scram"], b.bootstrap, conf_dir)
    # The README names SCRAM-SHA-512 and says SCRAM-SHA-256 works the same way.
    text = text.replace("sasl.mechanisms=SCRAM-SHA-512", f"sasl.mechanisms={mechanism}")
    assert f"sasl.mechanisms={mechanism}" in text
    c = start_cluster(stack, release, session_dir, "scram", text)
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="scram-")

    def refusals():
        return [ln for ln in c.plugin_lines() if re.search(r"error: .*SASL.*authentication failed: broker responded "
                                                           r"with unknown-user.*check .*sasl.username", ln)]

    jk.wait_for(refusals, 60, "the error line of the refused SCRAM login")
    attempts = b.tls_connections()
    time.sleep(15)  # a dozen more reconnects (reconnect.backoff.max.ms=1000)
    # The window saw retries (stunnel's log), or "one line" would prove nothing.
    b.wait_retries(attempts, "the refused SCRAM login retried")
    lines = c.plugin_lines()
    errors = [ln for ln in lines if "error:" in ln]
    sasl = [ln for ln in lines if "SASL" in ln and "librdkafka property" not in ln]
    numbers(f"{mechanism}: {len(errors)} error line(s), {len(sasl)} SASL line(s) in ~20 s: {errors[:1]}")
    assert len(refusals()) == 1 and len(errors) == 1, "\n".join(errors[:20])
    assert len(sasl) == 1, "a flood:\n" + "\n".join(sasl[:20])
    # The exchange reached tansu's SCRAM layer (its log), through the TLS endpoint.
    assert "accepted connection" in (b.dir / "stunnel.log").read_text()
    # The password never reaches slurmctld's log.
    assert secured.example_property(examples["scram"], "sasl.password") not in c.log_text()
    # Nothing is lost: at shutdown every record is saved.
    saved = secured.saved_at_shutdown(c, ids)
    numbers(f"{mechanism}: {len(saved)} of {N_JOBS} record(s) saved in the state file at shutdown")
    for jid, body in saved:
        assert dict(jk.decode_record(body))["jobid"] == jid


def test_plain_delivers_through_noida(release, session_dir, stack, numbers):
    port = PORTS["plain"]["broker"][0]
    d = session_dir / "noida"
    d.mkdir()

    class Noida:
        def stop(self):
            run([jk.RIG / "noida.sh", "stop", d], check=False, timeout=60)

    stack.append(Noida())
    jk.wait_bindable([port], 60)
    run([jk.RIG / "noida.sh", "start", d, port], timeout=300)
    sasl = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN", "sasl.username": "slurm-jobcomp",
            "sasl.password": "noida-accepts-any"}
    text = "\n".join([f"bootstrap.servers=127.0.0.1:{port}"] + [f"{k}={v}" for k, v in sasl.items()]) + "\n"
    c = start_cluster(stack, release, session_dir, "plain", text)
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="plain-")
    msgs = consume(f"127.0.0.1:{port}", {**sasl, "receive.message.max.bytes": 100000000,
                                         "fetch.max.bytes": 50000000}, c.finish_topic, expect=N_JOBS)
    numbers(f"SASL PLAIN (noida-db): records expected={N_JOBS} received={len(msgs)}")
    got = sorted(dict(jk.decode_record(m.value))["jobid"] for m in msgs)
    assert got == sorted(ids), f"jobs in the topic {got}, submitted {sorted(ids)}"
    assert not jk.record_id_problems(msgs)
    assert not [ln for ln in c.plugin_lines() if "error:" in ln]
