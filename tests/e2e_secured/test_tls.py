"""TLS between the plugin (in a real slurmctld 22.05.8) and Apache Kafka 4.x
itself (the session's broker, SSL listeners), certificates made by openssl.

- docs/securing-kafka.md's TLS example: every record delivered once (principal
  User:ANONYMOUS, granted the docs' ACLs);
- docs/securing-kafka.md's mutual-TLS example (client certificate, encrypted key) against
  a listener with ssl.client.auth=required: every record delivered once, the
  principal taken from the certificate (User:slurmctld, the only one granted);
  a client certificate from another CA: refused by the broker, one error
  line, nothing lost, delivered once after the right certificate is in place;
- a broker certificate from a CA the plugin does not trust, an expired one,
  one for another host: one error line naming the cause while the broker
  logs at least two refused handshakes, the records kept, and after the fix
  (the right CA; the broker's certificate replaced while it runs) and a
  slurmctld restart, delivered once, byte for byte what was saved.
"""

import shutil

import pytest

import secured
from secured import LISTENERS, lay_out_conf_dir, localize, one_error_line, start_cluster

N_JOBS = 6


def _bootstrap(listener):
    return f"127.0.0.1:{LISTENERS[listener]}"


def test_tls_delivers_every_record(release, session_dir, certs, examples, kafka, stack, numbers):
    conf_dir = session_dir / "etc-tls"
    lay_out_conf_dir(conf_dir, certs, {"ca.pem": "ca.pem"})
    c = start_cluster(stack, release, session_dir, "tls", localize(examples["tls"], _bootstrap("TLS"), conf_dir),
                      kafka=kafka, principal="User:ANONYMOUS")
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="tls-")
    msgs = kafka.read(c.finish_topic, expect=N_JOBS)
    numbers(f"TLS: records expected={N_JOBS} received={len(msgs)}")
    secured.check_delivered(msgs, ids, "tls-")
    assert not [ln for ln in c.plugin_lines() if "error" in ln.lower()], c.plugin_lines()


def _mtls_conf(session_dir, certs, name, client):
    conf_dir = session_dir / f"etc-{name}"
    lay_out_conf_dir(conf_dir, certs, {"ca.pem": "ca.pem", "slurmctld.pem": f"{client}.pem",
                                       "slurmctld.key": f"{client}.key"})
    return conf_dir


def test_mutual_tls_principal_from_the_certificate(release, session_dir, certs, examples, kafka, stack, numbers):
    # The listener demands a client certificate: without one nothing is read.
    from confluent_kafka.admin import AdminClient
    with pytest.raises(Exception):
        AdminClient({"bootstrap.servers": _bootstrap("MTLS"), "security.protocol": "SSL",
                     "ssl.ca.location": str(certs / "ca.pem")}).list_topics(timeout=5)
    conf_dir = _mtls_conf(session_dir, certs, "mtls", "client")
    assert b"ENCRYPTED PRIVATE KEY" in (conf_dir / "slurmctld.key").read_bytes()
    # Only User:slurmctld (CN=slurmctld through ssl.principal.mapping.rules)
    # may write: the records arrive only if the broker took the principal
    # from the certificate.
    c = start_cluster(stack, release, session_dir, "mtls", localize(examples["mtls"], _bootstrap("MTLS"), conf_dir),
                      kafka=kafka, principal="User:slurmctld")
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="mtls-")
    msgs = kafka.read(c.finish_topic, expect=N_JOBS)
    numbers(f"mutual TLS: records expected={N_JOBS} received={len(msgs)}")
    secured.check_delivered(msgs, ids, "mtls-")
    pw = secured.example_property(examples["mtls"], "ssl.key.password")
    assert pw not in c.log_text()


def test_mutual_tls_certificate_from_another_ca_refused(release, session_dir, certs, examples, kafka, stack, numbers):
    conf_dir = _mtls_conf(session_dir, certs, "mtls-other-ca", "other-client")
    # other-client.key is not encrypted: the example's ssl.key.password is
    # then ignored by OpenSSL, the certificate is what is wrong.
    since_broker = kafka.log_size()
    c = start_cluster(stack, release, session_dir, "mtls-other-ca",
                      localize(examples["mtls"], _bootstrap("MTLS"), conf_dir), kafka=kafka,
                      principal="User:slurmctld")
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="mtlsca-")
    line = one_error_line(c, kafka, "MTLS", r"error: .*(SSL|TLS|certificate|handshake)", 0, since_broker,
                          "mutual TLS, client certificate from another CA")
    numbers(f"client certificate from another CA: {line.split('jobcomp/kafka: ', 1)[-1][:200]}")
    saved = dict(secured.saved_at_shutdown(c, ids))
    # The fix: the certificate the broker's CA issued, then slurmctld again.
    shutil.copyfile(certs / "client.pem", conf_dir / "slurmctld.pem")
    shutil.copyfile(certs / "client.key", conf_dir / "slurmctld.key")
    c.start_ctld()
    msgs = kafka.read(c.finish_topic, expect=N_JOBS, linger=4)
    numbers(f"client certificate from another CA: after the fix: records expected={N_JOBS} received={len(msgs)}")
    secured.check_delivered(msgs, ids, "mtlsca-", saved)


# What each broken certificate does, where, how it is fixed, and the words
# the one error line must contain (OpenSSL's verify error, named by the plugin).
BAD_CERTS = {
    "wrong-ca": dict(listener="TLS", ca="other-ca.pem",
                     cause=r"unable to get local issuer certificate.*ssl\.ca\.location"),
    "expired": dict(listener="EXPIRED", ca="ca.pem", cause=r"certificate has expired.*renew the broker's certificate"),
    "wrong-host": dict(listener="WRONGHOST", ca="ca.pem", cause=r"IP address mismatch.*subjectAltName"),
}


@pytest.mark.parametrize("case", list(BAD_CERTS))
def test_bad_certificate_one_error_line_nothing_lost(case, release, session_dir, certs, examples, kafka, stack,
                                                      numbers):
    bad = BAD_CERTS[case]
    conf_dir = session_dir / f"etc-{case}"
    lay_out_conf_dir(conf_dir, certs, {"ca.pem": bad["ca"]})
    since_broker = kafka.log_size()
    c = start_cluster(stack, release, session_dir, case, localize(examples["tls"], _bootstrap(bad["listener"]), conf_dir),
                      kafka=kafka, principal="User:ANONYMOUS")
    ids = c.run_jobs(N_JOBS, timeout=90, prefix=f"{case}-")
    line = one_error_line(c, kafka, bad["listener"], bad["cause"], 0, since_broker, f"broker certificate: {case}")
    numbers(f"{case}: {line.split('jobcomp/kafka: ', 1)[-1][:200]}")
    # Nothing was delivered; at shutdown every record goes to the state file.
    saved = dict(secured.saved_at_shutdown(c, ids))
    # The fix, then slurmctld again with the same JobCompLoc.
    if case == "wrong-ca":
        shutil.copyfile(certs / "ca.pem", conf_dir / "ca.pem")
    else:
        # The broker's certificate replaced while it runs (dynamic config).
        kafka.set_listener_keystore(bad["listener"], certs / "broker-keystore.pem")
    c.start_ctld()
    msgs = kafka.read(c.finish_topic, expect=N_JOBS, linger=4)
    numbers(f"{case}: after the fix and a restart: records expected={N_JOBS} received={len(msgs)}")
    secured.check_delivered(msgs, ids, f"{case}-", saved)
