"""OIDC (sasl.oauthbearer.method=oidc) from the plugin in a real slurmctld
22.05.8: a token from a real OpenID provider (npm oidc-provider over HTTPS,
ci/rig/oidc.sh) with the client-credentials grant, proven by the provider's
own log of its token endpoint.

- The README's OIDC example (SASL_SSL through stunnel to tansu): the plugin
  gets its token (provider: grant.success, client_credentials, the README's
  client and scope) and connects to the broker with it; tansu 0.6.0 cannot
  validate OAUTHBEARER tokens, so nothing is delivered there, and nothing
  is lost (every record saved at shutdown).
- The same client against noida-db over SASL_PLAINTEXT (it takes OAUTHBEARER
  without checking the token): every record delivered with that token.
- A wrong client secret: the provider refuses (invalid_client), one clear
  error line in slurmctld's log, nothing lost.
A broker that validates the token's signature is NOT part of this: none
that runs here does.
"""

import json
import re
import time

import secured
from secured import PORTS, RigProcess, TlsBroker, consume, jk, lay_out_conf_dir, localize, start_cluster

N_JOBS = 4


def _provider(stack, session_dir, certs, examples, name, secret=None):
    """A provider of its own for test `name` (its own directory and log): a
    test's grants are its own, never an earlier test's."""
    text = examples["oidc"]
    p = RigProcess("oidc.sh", session_dir / f"oidc-{name}", PORTS["oidc"]["provider"], certs / "server.pem",
                   certs / "server.key", secured.example_property(text, "sasl.oauthbearer.client.id"),
                   secret or secured.example_property(text, "sasl.oauthbearer.client.secret"),
                   secured.example_property(text, "sasl.oauthbearer.scope"))
    stack.append(p.start())
    return p


def _token_events(p, event):
    out = []
    for ln in (p.dir / "oidc.log").read_text(errors="replace").splitlines():
        if ln.startswith("{"):
            o = json.loads(ln)
            if o.get("event") == event:
                out.append(o)
    return out


def _noida_cluster(stack, release, session_dir, certs, text, name):
    """noida-db and a cluster with the README's OIDC example over
    SASL_PLAINTEXT (noida-db has no TLS listener). Returns (cluster, port)."""
    port = PORTS["oidc"]["broker"][0]
    jk.wait_bindable([port], 60)
    stack.append(RigProcess("noida.sh", session_dir / f"noida-{name}", port).start())
    conf_dir = session_dir / f"etc-{name}"
    lay_out_conf_dir(conf_dir, certs, {"ca.pem": "ca.pem"})
    idp = f"127.0.0.1:{PORTS['oidc']['provider']}"
    local = localize(text, f"127.0.0.1:{port}", conf_dir, idp=idp).replace(
        "security.protocol=SASL_SSL", "security.protocol=SASL_PLAINTEXT")
    assert "security.protocol=SASL_PLAINTEXT" in local
    return start_cluster(stack, release, session_dir, name, local, ports="oidc"), port


def test_oidc_readme_example_gets_a_token(release, session_dir, certs, examples, stack, numbers):
    text = examples["oidc"]
    p = _provider(stack, session_dir, certs, examples, "readme")
    plain, tls = PORTS["oidc"]["broker"]
    b = TlsBroker(session_dir / "broker-oidc", plain, tls, tansu_args=["--authentication"])
    stack.append(b)
    b.start_tansu()
    b.start_tls(certs / "server.pem", certs / "server.key")
    conf_dir = session_dir / "etc-oidc"
    lay_out_conf_dir(conf_dir, certs, {"ca.pem": "ca.pem"})
    idp = f"127.0.0.1:{PORTS['oidc']['provider']}"
    c = start_cluster(stack, release, session_dir, "oidc", localize(text, b.bootstrap, conf_dir, idp=idp))
    grants = jk.wait_for(lambda: _token_events(p, "grant.success"), 60, "the provider's grant to the plugin")
    g = grants[0]
    numbers(f"OpenID provider: {g}")
    assert g["grant_type"] == "client_credentials" and g["path"] == "/token"
    assert g["client_id"] == secured.example_property(text, "sasl.oauthbearer.client.id")
    assert g["scope"] == secured.example_property(text, "sasl.oauthbearer.scope")
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="oidc-")
    # The plugin took its token to the broker, through the TLS endpoint.
    jk.wait_for(lambda: "accepted connection" in (b.dir / "stunnel.log").read_text(), 30,
                "a TLS connection to the broker")
    assert secured.example_property(text, "sasl.oauthbearer.client.secret") not in c.log_text()
    # tansu cannot validate an OAUTHBEARER token: nothing is delivered, and
    # nothing is lost.
    saved = secured.saved_at_shutdown(c, ids)
    numbers(f"OIDC to tansu: {len(saved)} of {N_JOBS} record(s) saved at shutdown")


def test_oidc_token_delivers_through_noida(release, session_dir, certs, examples, stack, numbers):
    text = examples["oidc"]
    p = _provider(stack, session_dir, certs, examples, "noida")
    c, port = _noida_cluster(stack, release, session_dir, certs, text, "oidcnoida")
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="oidcn-")
    msgs = consume(f"127.0.0.1:{port}", {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN",
                                         "sasl.username": "reader", "sasl.password": "x",
                                         "receive.message.max.bytes": 100000000, "fetch.max.bytes": 50000000},
                   c.finish_topic, expect=N_JOBS)
    got = sorted(dict(jk.decode_record(m.value))["jobid"] for m in msgs)
    grants = _token_events(p, "grant.success")
    numbers(f"OIDC to noida-db: records expected={N_JOBS} received={len(msgs)}; provider grants={len(grants)}")
    assert got == sorted(ids)
    assert grants and all(g["client_id"] == secured.example_property(text, "sasl.oauthbearer.client.id")
                          for g in grants)


def test_oidc_wrong_secret_one_error_line_nothing_lost(release, session_dir, certs, examples, stack, numbers):
    text = examples["oidc"]
    p = _provider(stack, session_dir, certs, examples, "badsecret", secret="the-provider-expects-another-secret")
    c, _ = _noida_cluster(stack, release, session_dir, certs, text, "oidcbad")
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="oidcb-")
    refused = jk.wait_for(lambda: _token_events(p, "grant.error"), 60, "the provider refusing the client")
    assert refused[0]["error"] == "invalid_client", refused[0]

    def token_errors():
        return [ln for ln in c.plugin_lines() if "error:" in ln and re.search(r"token|OIDC|oauth", ln, re.I)]

    jk.wait_for(token_errors, 60, "an error line about the token")
    time.sleep(10)
    # The window saw the token request retried (the provider's log), or "one
    # line" would prove nothing.
    jk.wait_for(lambda: len(_token_events(p, "grant.error")) >= 2, 90, "the provider refusing a second request")
    errors = [ln for ln in c.plugin_lines() if "error:" in ln]
    numbers(f"OIDC wrong secret: provider {refused[0]['error']} x{len(_token_events(p, 'grant.error'))}; "
            f"{len(errors)} error line(s): {errors[:1]}")
    assert len(errors) == 1, "\n".join(errors[:10])
    saved = secured.saved_at_shutdown(c, ids)
    numbers(f"OIDC wrong secret: {len(saved)} of {N_JOBS} record(s) saved at shutdown")
