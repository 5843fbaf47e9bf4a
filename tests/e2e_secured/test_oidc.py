"""OIDC (SASL OAUTHBEARER, sasl.oauthbearer.method=oidc) from the plugin in a
real slurmctld 22.05.8 to Apache Kafka 4.x itself, which validates every
token against the OpenID provider's JWKS, expected issuer and audience
(OAuthBearerValidatorCallbackHandler; the docs' blocks). The provider is a
real one (npm oidc-provider over HTTPS, ci/rig/oidc.sh), shared by the
session; each test reads its log from the test's own offset.

- docs/securing-kafka.md's OIDC example: the plugin gets a token (client-credentials
  grant, docs/securing-kafka.md's client and scope), the broker accepts it; every record
  delivered once, principal User:<client id> (the token's sub), the only
  one granted;
- a token for another audience (the plugin configured with another
  service's scope; the provider issues it): refused by the broker (its log
  names the audience), one error line, nothing lost; after the scope is
  fixed and slurmctld restarted, every record delivered once;
- a wrong client secret: the provider refuses (invalid_client), one error
  line, nothing lost;
- tokens that expire during the run (the provider's tokens live
  secured.TOKEN_TTL s; the broker ends each session when its token expires,
  and at the latest after the docs' connections.max.reauth.ms): jobs logged while the
  provider issues at least four tokens and for at least three token
  lifetimes; the broker's log shows each session ending no later than its
  token and at least one re-authentication (KIP-368, on a kept connection)
  per refresh; every record delivered once, no error line, no refused
  connection.
"""

import json
import re
import time

import secured
from secured import LISTENERS, PROVIDER_PORT, jk, lay_out_conf_dir, localize, one_error_line, start_cluster

N_JOBS = 4
OTHER_SCOPE = "other-api"  # ci/rig/oidc-provider.mjs: tokens for the audience "other-api"


def _events(provider, since, event):
    data = (provider.dir / "oidc.log").read_bytes()[since:].decode("utf-8", "replace")
    out = []
    for ln in data.splitlines():
        if ln.startswith("{"):
            o = json.loads(ln)
            if o.get("event") == event:
                out.append(o)
    return out


def _log_size(provider):
    return (provider.dir / "oidc.log").stat().st_size


def _conf(session_dir, certs, examples, name, replace=None):
    conf_dir = session_dir / f"etc-{name}"
    lay_out_conf_dir(conf_dir, certs, {"ca.pem": "ca.pem"})
    text = localize(examples["oidc"], f"127.0.0.1:{LISTENERS['OIDC']}", conf_dir, idp=f"127.0.0.1:{PROVIDER_PORT}")
    for key, value in (replace or {}).items():
        old = f"{key}={secured.example_property(examples['oidc'], key)}\n"
        assert old in text
        text = text.replace(old, f"{key}={value}\n")
    return text


def _principal(examples):
    return "User:" + secured.example_property(examples["oidc"], "sasl.oauthbearer.client.id")


def test_oidc_token_validated_by_the_broker_delivers(release, session_dir, certs, examples, kafka, provider, stack,
                                                     numbers):
    text = examples["oidc"]
    since = _log_size(provider)
    c = start_cluster(stack, release, session_dir, "oidc", _conf(session_dir, certs, examples, "oidc"),
                      kafka=kafka, principal=_principal(examples))
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="oidc-")
    msgs = kafka.read(c.finish_topic, expect=N_JOBS)
    grants = _events(provider, since, "grant.success")
    numbers(f"OIDC: records expected={N_JOBS} received={len(msgs)}; provider grants={len(grants)}: "
            f"{grants[:1]}")
    assert grants and all(g["client_id"] == secured.example_property(text, "sasl.oauthbearer.client.id")
                          and g["scope"] == secured.example_property(text, "sasl.oauthbearer.scope")
                          and g["grant_type"] == "client_credentials" for g in grants), grants
    secured.check_delivered(msgs, ids, "oidc-")
    assert not [ln for ln in c.plugin_lines() if "error:" in ln]
    assert secured.example_property(text, "sasl.oauthbearer.client.secret") not in c.log_text()


def test_oidc_token_for_another_audience_refused_by_the_broker(release, session_dir, certs, examples, kafka, provider,
                                                                stack, numbers):
    since, since_broker = _log_size(provider), kafka.log_size()
    c = start_cluster(stack, release, session_dir, "oidc-audience",
                      _conf(session_dir, certs, examples, "oidc-audience", {"sasl.oauthbearer.scope": OTHER_SCOPE}),
                      kafka=kafka, principal=_principal(examples))
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="oidca-")
    line = one_error_line(c, kafka, "OIDC", r"error: .*SASL.*authentication", 0, since_broker,
                          "OIDC, token for another audience")
    numbers(f"OIDC token for another audience: {line.split('jobcomp/kafka: ', 1)[-1][:220]}")
    # The provider issued it; the broker refused it for its audience.
    assert [g for g in _events(provider, since, "grant.success") if g["scope"] == OTHER_SCOPE]
    assert kafka.log_lines(since_broker, rf"Audience \(aud\) claim \[{OTHER_SCOPE}\] doesn't contain an acceptable"
                                         r" identifier\. Expected kafka")
    saved = dict(secured.saved_at_shutdown(c, ids))
    c.conf_text = _conf(session_dir, certs, examples, "oidc-audience")
    c.write_kafka_conf()
    c.start_ctld()
    msgs = kafka.read(c.finish_topic, expect=N_JOBS, linger=4)
    numbers(f"OIDC token for another audience: after the fix: records expected={N_JOBS} received={len(msgs)}")
    secured.check_delivered(msgs, ids, "oidca-", saved)


def test_oidc_wrong_secret_one_error_line_nothing_lost(release, session_dir, certs, examples, kafka, provider, stack,
                                                       numbers):
    since = _log_size(provider)
    c = start_cluster(stack, release, session_dir, "oidc-secret",
                      _conf(session_dir, certs, examples, "oidc-secret",
                            {"sasl.oauthbearer.client.secret": "the-provider-expects-another-secret"}),
                      kafka=kafka, principal=_principal(examples))
    ids = c.run_jobs(N_JOBS, timeout=90, prefix="oidcs-")
    refused = jk.wait_for(lambda: _events(provider, since, "grant.error"), 60, "the provider refusing the client")
    assert refused[0]["error"] == "invalid_client", refused[0]
    # No token, so no connection reaches the broker: the provider's refusals
    # are the attempts counted in the window.
    line = one_error_line(c, kafka, None, r"(?i)error: .*(token|OIDC|oauth)", 0, 0, "OIDC, wrong client secret")
    attempts = _events(provider, since, "grant.error")
    numbers(f"OIDC wrong secret: provider {refused[0]['error']} x{len(attempts)}; {line.split('jobcomp/kafka: ', 1)[-1][:200]}")
    assert len(attempts) >= 2, f"the provider refused {len(attempts)} request(s): the window proves no flood"
    saved = secured.saved_at_shutdown(c, ids)
    numbers(f"OIDC wrong secret: {len(saved)} of {N_JOBS} record(s) saved at shutdown")


def test_oidc_tokens_expire_and_are_refreshed_during_a_run(release, session_dir, certs, examples, kafka, provider,
                                                            stack, numbers):
    ttl_ms = secured.TOKEN_TTL * 1000
    since, since_broker = _log_size(provider), kafka.log_size()
    c = start_cluster(stack, release, session_dir, "oidc-refresh", _conf(session_dir, certs, examples, "oidc-refresh"),
                      kafka=kafka, principal=_principal(examples))
    first = jk.wait_for(lambda: _events(provider, since, "grant.success"), 90, "the plugin's first token")
    t0 = time.monotonic()
    # Rounds of jobs until the provider has issued at least four tokens (three
    # refreshes) and three token lifetimes have passed since the first one:
    # the loop's ends are events, its deadline only a bound.
    ids, rounds = [], 0
    deadline = t0 + 6 * secured.TOKEN_TTL + 120
    while True:
        grants = len(_events(provider, since, "grant.success"))
        if grants >= 4 and time.monotonic() - t0 >= 3 * secured.TOKEN_TTL:
            break
        assert time.monotonic() < deadline, f"{grants} token(s) issued in {time.monotonic() - t0:.0f} s"
        ids += c.run_jobs(2, timeout=90, prefix=f"oidcr-{rounds}-")
        rounds += 1
        time.sleep(secured.TOKEN_TTL / 4)
    grants = _events(provider, since, "grant.success")
    msgs = kafka.read(c.finish_topic, expect=len(ids), timeout=120, linger=4)
    # The broker's SaslServerAuthenticator (DEBUG): one line per OAUTHBEARER
    # (re-)authentication, the session lifetime it gave the client.
    auths = kafka.log_lines(since_broker, r"Authentication complete; session max lifetime from broker config=\d+ ms, "
                                          r"credential expiration=")
    lifetimes = [int(m.group(1)) for m in (re.search(r"sending (\d+) ms to client", a) for a in auths) if m]
    reauths = kafka.log_lines(since_broker, r"Set SASL server state to COMPLETE during re-authentication")
    numbers(f"tokens of {secured.TOKEN_TTL} s: {len(grants)} issued over {time.monotonic() - t0:.0f} s, {rounds} rounds, "
            f"records expected={len(ids)} received={len(msgs)}; broker (re-)authentications={len(auths)}, "
            f"of which re-authentications={len(reauths)}, "
            f"session lifetimes given (ms)={lifetimes[:12]}")
    assert first[0]["client_id"] == secured.example_property(examples["oidc"], "sasl.oauthbearer.client.id")
    secured.check_delivered(msgs, ids, "oidcr-")
    assert not [ln for ln in c.plugin_lines() if re.search(r"\berror: ", ln)]
    assert not kafka.refused_connections(since_broker, "OIDC"), kafka.refused_connections(since_broker, "OIDC")[:3]
    # The broker ran with the docs' cap on a session, and ended each session
    # no later than its token expired (Apache Kafka 4.4.0 does the latter
    # even without the cap); the client logged in again with each new token
    # on a connection it kept (KIP-368 re-authentication, not a new
    # connection): at least one re-authentication per refresh.
    cap = re.search(r"connections\.max\.reauth\.ms=(\d+)", secured.doc_blocks("kafka-broker")["oidc"]).group(1)
    assert all(f"session max lifetime from broker config={cap} ms," in a for a in auths), auths[:2]
    assert lifetimes and all(0 < ms <= ttl_ms for ms in lifetimes), lifetimes
    assert len(reauths) >= len(grants) - 1, f"{len(reauths)} re-authentication(s) for {len(grants)} token(s)"
