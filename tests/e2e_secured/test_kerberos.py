"""Kerberos (SASL GSSAPI) from the plugin in a real slurmctld 22.05.8 to
Apache Kafka 4.x itself, with a real MIT KDC (Debian's krb5-kdc,
ci/rig/kdc.sh) on loopback: docs/securing-kafka.md's Kerberos example.

The broker has its own service principal kafka/127.0.0.1@EXAMPLE.ORG and
keytab (JAAS Krb5LoginModule, -Djava.security.krb5.conf: the docs' blocks);
the plugin's keytab is owned by SlurmUser (root here), mode 0600.

- the example as written: librdkafka runs kinit with the keytab (the KDC
  issues the TGT), asks for the broker's service ticket (TGS-REQ), the broker
  accepts it; every record delivered once, principal User:slurm (Kafka's
  default principal.to.local rule), the only one granted;
- a keytab without the principal: kinit fails, one error line, nothing
  lost; after the right keytab is in place and slurmctld restarted, every
  record delivered once, byte for byte what was saved.
"""

import stat

import pytest

import secured
from secured import LISTENERS, REALM, jk, localize, one_error_line, start_cluster

N_JOBS = 4


@pytest.fixture
def krb_env(kdc, session_dir, monkeypatch, request):
    """slurmctld (and the kinit librdkafka runs) use the session's KDC and a
    private ticket cache per test, through the environment the rig passes on."""
    monkeypatch.setenv("KRB5_CONFIG", str(kdc.dir / "krb5.conf"))
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{session_dir}/krb5cc_{request.node.name}")
    return kdc


def _kdc_lines(kdc, principal, kind, server):
    return [ln for ln in (kdc.dir / "kdc.log").read_text(errors="replace").splitlines()
            if f"{kind} " in ln and "ISSUE" in ln and f"{principal} for {server}" in ln]


def _principal(examples):
    """The plugin's principal as the broker names it: the first component
    of sasl.kerberos.principal (the default realm)."""
    p = secured.example_property(examples["kerberos"], "sasl.kerberos.principal")
    assert p.endswith("@" + REALM)
    return "User:" + p.split("/")[0].split("@")[0]


def test_kerberos_delivers_every_record(release, session_dir, examples, kafka, krb_env, stack, numbers):
    kdc = krb_env
    text = examples["kerberos"]
    principal = secured.example_property(text, "sasl.kerberos.principal")
    service = secured.example_property(text, "sasl.kerberos.service.name")
    conf_dir = session_dir / "etc-kerberos"
    conf_dir.mkdir(mode=0o700)
    keytab = conf_dir / "slurm.keytab"
    jk.run([jk.RIG / "kdc.sh", "keytab", kdc.dir, principal, keytab])
    st = keytab.stat()
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600
    c = start_cluster(stack, release, session_dir, "kerberos",
                      localize(text, f"127.0.0.1:{LISTENERS['GSSAPI']}", conf_dir), kafka=kafka,
                      principal=_principal(examples))
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="krb-")
    msgs = kafka.read(c.finish_topic, expect=N_JOBS)
    as_req = _kdc_lines(kdc, principal, "AS_REQ", f"krbtgt/{REALM}@{REALM}")
    tgs = _kdc_lines(kdc, principal, "TGS_REQ", secured.BROKER_KRB_PRINCIPAL)
    numbers(f"GSSAPI: records expected={N_JOBS} received={len(msgs)}; KDC: {len(as_req)} AS-REQ, "
            f"{len(tgs)} TGS-REQ for {secured.BROKER_KRB_PRINCIPAL}")
    assert as_req and tgs, "the KDC issued no ticket to the plugin's principal"
    assert secured.BROKER_KRB_PRINCIPAL.startswith(f"{service}/")
    secured.check_delivered(msgs, ids, "krb-")
    assert not [ln for ln in c.plugin_lines() if "error:" in ln]


def test_kerberos_keytab_without_the_principal_one_error_line_then_fixed(release, session_dir, examples, kafka,
                                                                          krb_env, stack, numbers):
    kdc = krb_env
    text = examples["kerberos"]
    principal = secured.example_property(text, "sasl.kerberos.principal")
    conf_dir = session_dir / "etc-kerberos-bad"
    conf_dir.mkdir(mode=0o700)
    # The keytab of another principal, at the path the example names.
    jk.run([jk.RIG / "kdc.sh", "keytab", kdc.dir, f"someone-else@{REALM}", conf_dir / "slurm.keytab"])
    c = start_cluster(stack, release, session_dir, "kerberos-bad",
                      localize(text, f"127.0.0.1:{LISTENERS['GSSAPI']}", conf_dir), kafka=kafka,
                      principal=_principal(examples))
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="krbbad-")
    # kinit fails before any connection: the broker sees none, so the
    # window is watched without counting refusals.
    line = one_error_line(c, kafka, None, r"(?i)error: .*kinit", 0, 0, "Kerberos, keytab without the principal")
    numbers(f"keytab without the principal: {line.split('jobcomp/kafka: ', 1)[-1][:220]}")
    saved = dict(secured.saved_at_shutdown(c, ids))
    # The fix: the principal's keytab (a new key, written where the example says).
    jk.run([jk.RIG / "kdc.sh", "keytab", kdc.dir, principal, conf_dir / "slurm.keytab"])
    c.start_ctld()
    msgs = kafka.read(c.finish_topic, expect=N_JOBS, linger=4)
    numbers(f"keytab without the principal: after the fix: records expected={N_JOBS} received={len(msgs)}")
    secured.check_delivered(msgs, ids, "krbbad-", saved)
