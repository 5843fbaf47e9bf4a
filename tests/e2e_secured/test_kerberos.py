"""Kerberos (GSSAPI) from the plugin in a real slurmctld 22.05.8, with a real
MIT KDC (Debian's krb5-kdc, ci/rig/kdc.sh) on loopback: the README's
Kerberos example, its realm, principal and keytab made by the test.

Proven here: the plugin starts with GSSAPI (librdkafka built with Cyrus
SASL), librdkafka runs sasl.kerberos.kinit.cmd with the keytab and obtains
the principal's ticket (the KDC logs the AS-REQ and issues the TGT), and the
GSSAPI exchange with the broker begins: the broker accepts the GSSAPI
handshake and the client asks the KDC for a service ticket for
kafka/127.0.0.1 (the KDC logs the TGS-REQ and issues it), and sends it to the
broker (librdkafka's state AUTH_REQ). The broker here (noida-db, the only one
that takes GSSAPI's handshake; tansu offers SCRAM only) never answers that
token, so a broker's acceptance of the ticket and the delivery of records
over Kerberos are NOT proven; the records are kept (saved at shutdown).
"""

import stat
import time

import secured
from secured import PORTS, RigProcess, jk, localize, start_cluster

N_JOBS = 4
REALM = "EXAMPLE.ORG"


def test_kerberos_keytab_ticket_and_gssapi_exchange(release, session_dir, examples, stack, numbers, monkeypatch):
    text = examples["kerberos"]
    principal = secured.example_property(text, "sasl.kerberos.principal")
    service = secured.example_property(text, "sasl.kerberos.service.name")
    assert principal.endswith("@" + REALM)
    kdc = RigProcess("kdc.sh", session_dir / "kdc", PORTS["kerberos"]["kdc"], REALM)
    stack.append(kdc.start())
    conf_dir = session_dir / "etc-kerberos"
    conf_dir.mkdir(mode=0o700)
    keytab = conf_dir / "slurm.keytab"
    jk.run([jk.RIG / "kdc.sh", "keytab", kdc.dir, principal, keytab])
    # The README: the keytab owned by SlurmUser (root in the rig), mode 0600.
    st = keytab.stat()
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600
    # The broker's service principal, as librdkafka names it: service/host.
    jk.run([jk.RIG / "kdc.sh", "principal", kdc.dir, f"{service}/127.0.0.1@{REALM}"])
    # slurmctld (and the kinit librdkafka runs) use this KDC and a private
    # ticket cache, through the environment the rig passes on.
    monkeypatch.setenv("KRB5_CONFIG", str(kdc.dir / "krb5.conf"))
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{session_dir}/krb5cc_slurmctld")

    port = PORTS["kerberos"]["broker"][0]
    jk.wait_bindable([port], 60)
    stack.append(RigProcess("noida.sh", session_dir / "noida-krb", port).start())
    c = start_cluster(stack, release, session_dir, "kerberos", localize(text, f"127.0.0.1:{port}", conf_dir))
    kdc_log = kdc.dir / "kdc.log"

    def kdc_lines(kind, server):
        return [ln for ln in kdc_log.read_text(errors="replace").splitlines()
                if f"{kind} " in ln and "ISSUE" in ln and f"{principal} for {server}" in ln]

    as_req = jk.wait_for(lambda: kdc_lines("AS_REQ", f"krbtgt/{REALM}@{REALM}"), 60,
                         f"the KDC's AS-REQ of {principal} (kinit with the keytab)")
    numbers(f"KDC: {as_req[0].split('): ', 1)[-1][:160]}")
    # Records make librdkafka connect: the GSSAPI exchange asks for the
    # broker's service ticket.
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="krb-")
    tgs = jk.wait_for(lambda: kdc_lines("TGS_REQ", f"{service}/127.0.0.1@{REALM}"), 60,
                      f"the KDC's TGS-REQ for {service}/127.0.0.1@{REALM}")
    numbers(f"KDC: {tgs[0].split('): ', 1)[-1][:160]}")
    assert not [ln for ln in c.plugin_lines() if "No provider for SASL mechanism GSSAPI" in ln]
    # What the broker made of it: noida-db accepts the GSSAPI handshake, takes
    # the first GSSAPI token (the AP-REQ with that service ticket) and never
    # answers it; librdkafka gives up on the connection after 30 s in the
    # AUTH_REQ state and tries again. One warning line for all the attempts.
    def stuck():
        return [ln for ln in c.plugin_lines() if "timed out in state AUTH_REQ" in ln]

    jk.wait_for(stuck, 90, "librdkafka's line about the broker not answering the GSSAPI token")
    numbers(f"broker's answer to the GSSAPI token: {stuck()[0].split('jobcomp/kafka: ', 1)[-1][:200]}")
    # Nothing is lost: at shutdown every record is saved.
    saved = secured.saved_at_shutdown(c, ids)
    numbers(f"GSSAPI: {len(saved)} of {N_JOBS} record(s) saved at shutdown; "
            f"{len(kdc_lines('AS_REQ', f'krbtgt/{REALM}@{REALM}'))} AS-REQ and "
            f"{len(kdc_lines('TGS_REQ', f'{service}/127.0.0.1@{REALM}'))} TGS-REQ issued by the KDC")


def test_kerberos_keytab_without_the_principal_one_error_line(release, session_dir, examples, stack, numbers,
                                                                monkeypatch):
    """A keytab that does not hold the principal named in JobCompLoc: kinit
    fails (the KDC never sees an AS-REQ for it); one clear error line, and
    nothing is lost."""
    text = examples["kerberos"]
    principal = secured.example_property(text, "sasl.kerberos.principal")
    kdc = RigProcess("kdc.sh", session_dir / "kdc-bad", PORTS["kerberos"]["kdc"], REALM)
    stack.append(kdc.start())
    conf_dir = session_dir / "etc-kerberos-bad"
    conf_dir.mkdir(mode=0o700)
    jk.run([jk.RIG / "kdc.sh", "principal", kdc.dir, principal])
    # The keytab of another principal, at the path the example names.
    jk.run([jk.RIG / "kdc.sh", "keytab", kdc.dir, f"someone-else@{REALM}", conf_dir / "slurm.keytab"])
    monkeypatch.setenv("KRB5_CONFIG", str(kdc.dir / "krb5.conf"))
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{session_dir}/krb5cc_slurmctld_bad")
    port = PORTS["kerberos"]["broker"][0]
    jk.wait_bindable([port], 60)
    stack.append(RigProcess("noida.sh", session_dir / "noida-krb-bad", port).start())
    c = start_cluster(stack, release, session_dir, "kerberos-bad", localize(text, f"127.0.0.1:{port}", conf_dir),
                      ports="kerberos")
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="krbbad-")

    def kinit_errors():
        return [ln for ln in c.plugin_lines() if "error:" in ln and "kinit" in ln.lower()]

    jk.wait_for(kinit_errors, 60, "an error line about kinit")
    time.sleep(10)
    errors = [ln for ln in c.plugin_lines() if "error:" in ln]
    numbers(f"keytab without the principal: {len(errors)} error line(s): {errors[:2]}")
    assert len(errors) == 1, "\n".join(errors[:10])
    # kinit failed on the keytab, before asking the KDC: its log (read: it
    # has the KDC's own start-up lines) has no AS-REQ naming the principal.
    kdc_text = (kdc.dir / "kdc.log").read_text(errors="replace")
    assert kdc_text.strip(), "the KDC's log is empty: not the log meant"
    as_reqs = [ln for ln in kdc_text.splitlines() if "AS_REQ " in ln and principal in ln]
    assert as_reqs == [], "\n".join(as_reqs[:5])
    saved = secured.saved_at_shutdown(c, ids)
    numbers(f"keytab without the principal: {len(saved)} of {N_JOBS} record(s) saved at shutdown")
