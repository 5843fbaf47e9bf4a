"""TLS between the plugin (in a real slurmctld 22.05.8) and a real broker:
tansu behind Debian's stunnel4, with certificates made by openssl.

- the README's TLS example: every record delivered;
- the README's mutual-TLS example (client certificate, encrypted key): every
  record delivered, and the endpoint does demand the certificate;
- a wrong CA, an expired certificate, a certificate for another host: one
  error line naming the cause (no flood), the records kept, and after the
  certificate is fixed and slurmctld restarted, delivered byte-exact and once.
"""

import re
import shutil
import time

import pytest

import secured
from secured import PORTS, TlsBroker, consume, jk, lay_out_conf_dir, localize, start_cluster

N_JOBS = 6


def _check_delivered(msgs, ids, prefix):
    """Each job's record exactly once, valid, with one record id."""
    by_job = {}
    for m in msgs:
        rec = dict(jk.decode_record(m.value))
        by_job.setdefault(rec["jobid"], []).append(rec)
        assert m.key == str(rec["jobid"]).encode()
    assert sorted(by_job) == sorted(ids), f"jobs in the topic {sorted(by_job)}, submitted {sorted(ids)}"
    assert all(len(v) == 1 for v in by_job.values()), {k: len(v) for k, v in by_job.items() if len(v) > 1}
    assert not jk.record_id_problems(msgs), jk.record_id_problems(msgs)
    for recs in by_job.values():
        assert recs[0]["state"] == "COMPLETED" and recs[0]["job_name"].startswith(prefix)


def test_tls_delivers_every_record(release, session_dir, certs, examples, stack, numbers):
    plain, tls = PORTS["tls"]["broker"]
    b = TlsBroker(session_dir / "broker-tls", plain, tls)
    stack.append(b)
    b.start_tansu()
    b.start_tls(certs / "server.pem", certs / "server.key")
    conf_dir = session_dir / "etc-tls"
    lay_out_conf_dir(conf_dir, certs, {"ca.pem": "ca.pem"})
    c = start_cluster(stack, release, session_dir, "tls", localize(examples["tls"], b.bootstrap, conf_dir))
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="tls-")
    msgs = consume(b.bootstrap, {"security.protocol": "SSL", "ssl.ca.location": str(certs / "ca.pem")},
                   c.finish_topic, expect=N_JOBS)
    numbers(f"TLS: records expected={N_JOBS} received={len(msgs)}")
    _check_delivered(msgs, ids, "tls-")
    # The records crossed the TLS endpoint (stunnel logs each connection it serves).
    assert "accepted connection" in (b.dir / "stunnel.log").read_text()
    assert not [ln for ln in c.plugin_lines() if "error" in ln.lower()], c.plugin_lines()


def test_mutual_tls_with_encrypted_key(release, session_dir, certs, examples, stack, numbers):
    plain, tls = PORTS["mtls"]["broker"]
    b = TlsBroker(session_dir / "broker-mtls", plain, tls)
    stack.append(b)
    b.start_tansu()
    b.start_tls(certs / "server.pem", certs / "server.key", verify=certs / "ca.pem")
    # The endpoint demands a client certificate: without one nothing is read.
    from confluent_kafka.admin import AdminClient
    with pytest.raises(Exception):
        AdminClient({"bootstrap.servers": b.bootstrap, "security.protocol": "SSL",
                     "ssl.ca.location": str(certs / "ca.pem")}).list_topics(timeout=5)
    conf_dir = session_dir / "etc-mtls"
    lay_out_conf_dir(conf_dir, certs, {"ca.pem": "ca.pem", "slurmctld.pem": "client.pem",
                                       "slurmctld.key": "client.key"})
    assert b"ENCRYPTED PRIVATE KEY" in (conf_dir / "slurmctld.key").read_bytes()
    c = start_cluster(stack, release, session_dir, "mtls", localize(examples["mtls"], b.bootstrap, conf_dir))
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="mtls-")
    client = {"security.protocol": "SSL", "ssl.ca.location": str(certs / "ca.pem"),
              "ssl.certificate.location": str(certs / "client.pem"), "ssl.key.location": str(certs / "client.key"),
              "ssl.key.password": secured.example_property(examples["mtls"], "ssl.key.password")}
    msgs = consume(b.bootstrap, client, c.finish_topic, expect=N_JOBS)
    numbers(f"mutual TLS: records expected={N_JOBS} received={len(msgs)}")
    _check_delivered(msgs, ids, "mtls-")
    # The secret itself never reaches the log.
    pw = secured.example_property(examples["mtls"], "ssl.key.password")
    assert pw not in c.log_text()


# What each broken certificate does, how it is fixed, and the words the one
# error line must contain (OpenSSL's verify error, named by librdkafka).
BAD_CERTS = {
    "wrong-ca": dict(ca="other-ca.pem", server="server", cause=r"unable to get local issuer certificate.*ssl\.ca\.location"),
    "expired": dict(ca="ca.pem", server="expired", cause=r"certificate has expired.*renew the broker's certificate"),
    "wrong-host": dict(ca="ca.pem", server="wronghost", cause=r"IP address mismatch.*subjectAltName"),
}


@pytest.mark.parametrize("case", list(BAD_CERTS))
def test_bad_certificate_one_error_line_nothing_lost(case, release, session_dir, certs, examples, stack, numbers):
    bad = BAD_CERTS[case]
    plain, tls = PORTS[case]["broker"]
    b = TlsBroker(session_dir / f"broker-{case}", plain, tls)
    stack.append(b)
    b.start_tansu()
    b.start_tls(certs / f"{bad['server']}.pem", certs / f"{bad['server']}.key")
    conf_dir = session_dir / f"etc-{case}"
    lay_out_conf_dir(conf_dir, certs, {"ca.pem": bad["ca"]})
    c = start_cluster(stack, release, session_dir, case, localize(examples["tls"], b.bootstrap, conf_dir))
    ids = c.run_jobs(N_JOBS, timeout=90, prefix=f"{case}-")

    def cause_lines():
        return [ln for ln in c.plugin_lines() if re.search(bad["cause"], ln)]

    jk.wait_for(cause_lines, 60, f"an error line naming the cause ({bad['cause']})")
    # librdkafka keeps reconnecting (reconnect.backoff.max.ms=1000): watch
    # long enough for a dozen more attempts, and at least two seen by stunnel.
    attempts = b.tls_connections()
    time.sleep(15)
    b.wait_retries(attempts, f"the {case} handshake retried")
    lines = c.plugin_lines()
    errors = [ln for ln in lines if " error: " in ln or ln.split("]", 1)[-1].lstrip().startswith("error:")]
    tls_lines = [ln for ln in lines if re.search(r"SSL|TLS|certificate|handshake", ln, re.I)
                 and "librdkafka property" not in ln]
    numbers(f"{case}: {len(errors)} error line(s), {len(tls_lines)} TLS line(s) in "
            f"~{15 + 5}s of reconnects: {errors[:2]}")
    assert len(cause_lines()) == 1, "\n".join(tls_lines[:20])
    assert len(errors) == 1, "\n".join(errors[:20])
    assert len(tls_lines) == 1, "a flood:\n" + "\n".join(tls_lines[:20])

    # Nothing was delivered; at shutdown every record goes to the state file.
    payload = dict(secured.saved_at_shutdown(c, ids))

    # The fix, then slurmctld again with the same JobCompLoc.
    if case == "wrong-ca":
        shutil.copyfile(certs / "ca.pem", conf_dir / "ca.pem")
    else:
        b.stop_tls()
        b.start_tls(certs / "server.pem", certs / "server.key")
    c.start_ctld()
    msgs = consume(b.bootstrap, {"security.protocol": "SSL", "ssl.ca.location": str(certs / "ca.pem")},
                   c.finish_topic, expect=N_JOBS, linger=4)
    numbers(f"{case}: after the fix and a restart: records expected={N_JOBS} received={len(msgs)}")
    _check_delivered(msgs, ids, f"{case}-")
    for m in msgs:
        jid = int(m.key)
        assert m.value == payload[jid], f"job {jid}: delivered bytes differ from the saved ones"
