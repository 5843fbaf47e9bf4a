"""The run-time layout guard inside the real slurmctld 26.05.5 (Debian forky
chroot): README "Layout guard", issue #16.

  pytest tests/layout_guard26     (ci/layout-guard26.sh builds what it needs)

Two clusters, one after the other, on 127.0.0.1 ports 20110/20111, one Apache
Kafka node on 20101 (controller 20102) (this suite's range is 20100-20199, so it can run beside the
other suites):

  right  build/slurm-26.05.5/jobcomp_kafka.so (the layout of 26.05.5): the
         guard verifies the layout on the first records, against slurmctld's
         own memory and its find_job_record (its verbose line counts the
         lookups: one per record verified), and accepts it: every job gives
         its record (valid against schema/26.05), no guard error line.
  wrong  build/layout-guard/jobcomp_kafka-26.05.5-as-<LAYOUT>.so: 26.05.5's
         plugin_version, another release's struct layout (JK_TEST_FORCE_LAYOUT,
         test-only). slurmctld loads it, the guard refuses the layout on the
         first record with ONE error line naming the release, the assumed
         layout, the failed check and the remedy; slurmctld stays up, the
         jobs still run and complete, and nothing reaches the broker.
  moved  build/layout-guard/jobcomp_kafka-26.05.5-as-26_05_5+job_id_moved.so:
         26.05.5's layout with one member of job_record_t moved
         (job_id, 4 bytes on; TEST-ONLY, JK_TEST_FORCE_LAYOUT=26_05_5+job_id_moved),
         slurm_conf_t untouched, as a site patch to job_record_t would leave
         it. The slurm_conf check at init passes; the first record is refused
         by the record checks (the step id's job id against job_record.job_id):
         one error line, slurmctld up, every record counted as not taken.
"""

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
import jk  # noqa: E402
from contract_fixture import record_contract  # noqa: E402,F401 (autouse fixture)

RELEASE = "26.05.5"
BROKER_PORT, CTLD_PORT, SLURMD_PORT = 20101, 20110, 20111
# The wrong layouts tried: the previous micro release's (job_record gained
# members between 26.05.3 and 26.05.5) and an older series'. In 26.05.5 both
# are refused at init by the slurm_conf check, before any job record is read;
# the record checks are what MOVED_LAYOUT proves.
WRONG_LAYOUTS = os.environ.get("JK_GUARD_LAYOUTS", "26_05_3 24_11_7").split()
MOVED_LAYOUT = "26_05_5+job_id_moved"
VERIFIED = re.compile(r"layout guard: the struct layout .* verified on (\d+) job record\(s\), "
                      r"(\d+) of them found by slurmctld's find_job_record")
JOBS = 4
REPO = Path(__file__).resolve().parents[2]
CHROOT_ROOT = jk.chroot_root(jk.CHROOT_SUITES[jk.series(RELEASE)])
GUARD_LINE = "layout guard: this plugin was built for Slurm 26.05.5 assuming the struct layout"
jk.LOG_NAME = "layout-guard26"
# The right layout's records are checked against 26.05's schema as they are consumed.
jk.CONTRACT_RELEASE = RELEASE


class ForcedLayoutCluster(jk.Cluster):
    """A cluster whose plugin is the given .so instead of the release's build."""

    def __init__(self, so, **kw):
        super().__init__(**kw)
        self.so = so

    def plugin_build(self):
        return self.so


@pytest.fixture(scope="module")
def tag():
    return os.environ.get("JK_E2E_TAG") or str(os.getpid())


@pytest.fixture(scope="module")
def broker(tag, request):
    d = f"/tmp/jk-guard26-{tag}"
    shutil.rmtree(d, ignore_errors=True)
    # The suite's own Apache Kafka node (its controller on the next port):
    # layout-guard26 runs as its own pytest session, beside the e2e suites.
    from kafka_rig import ApacheKafka  # it imports jk
    b = ApacheKafka(os.path.join(d, "kafka"), BROKER_PORT, heap=jk.KAFKA_HEAP)
    b.start()
    yield b
    b.stop()
    if jk.remove_dirs(request):
        shutil.rmtree(d, ignore_errors=True)


def run_cluster(name, so, broker, tag, while_up=None):
    """Starts a cluster with plugin `so`, runs JOBS jobs to their end, calls
    while_up(cluster) if given, stops it, and returns (cluster, job ids,
    {job id: final state}, whether slurmctld was still up after the jobs, its
    log, while_up's result). The cluster's directory is kept with
    JK_E2E_KEEP=1."""
    c = ForcedLayoutCluster(so, release=RELEASE, name=name, dir=CHROOT_ROOT / "rig" / f"jk-guard26-{tag}-{name}",
                            ctld_port=CTLD_PORT, slurmd_port=SLURMD_PORT, plugin="ours",
                            bootstrap=broker.bootstrap, params="flush_timeout=1000",
                            kafka_props=jk.KAFKA_PROPS, debugflags="")
    try:
        c.start()
        ids = c.run_jobs(JOBS, timeout=120, prefix=f"{name}-")
        states = {jid: c.show_job(jid).state for jid in ids}
        up = c.ping_ok() and jk.pid_alive(c.ctld_pid())
        seen = while_up(c) if while_up else None
    finally:
        c.stop()
        text = c.log_text()
        if not os.environ.get("JK_E2E_KEEP"):
            c.remove()
    return c, ids, states, up, text, seen


def guard_lines(text):
    return [ln for ln in text.splitlines() if "layout guard:" in ln]


def test_the_right_layout_is_verified_and_records_flow(broker, tag):
    so = REPO / "build" / f"slurm-{RELEASE}" / "jobcomp_kafka.so"
    assert so.is_file(), f"{so} missing: make build SLURM_VERSION={RELEASE}"
    # Read while slurmctld is up: stopped at once, a fini that comes before
    # the first delivery to the just auto-created topic would (rightly) save
    # the records to StateSaveLocation for the next start, which never comes.
    c, ids, states, up, text, got = run_cluster(
        "right", so, broker, tag,
        while_up=lambda c: broker.consume(c.finish_topic, expect=JOBS, timeout=60, linger=2))
    assert up, "slurmctld went down"
    assert set(states.values()) == {"COMPLETED"}, states
    errors = [ln for ln in guard_lines(text) if "error:" in ln]
    assert errors == [], "\n".join(errors)
    # Verified once, each record looked up in slurmctld's find_job_record (a
    # host without it skips that check: 0 here would be a check not made).
    verified = [VERIFIED.search(ln).groups() for ln in guard_lines(text) if VERIFIED.search(ln)]
    assert len(verified) == 1, "\n".join(guard_lines(text)) or text[-3000:]
    records, lookups = map(int, verified[0])
    jk.note_number(f"right layout: verified on {records} record(s), {lookups} find_job_record lookup(s)")
    assert lookups > 0 and lookups == records, verified
    assert got.rc == 0 and len(got.messages) == JOBS, (got.rc, len(got.messages), got.stderr[-2000:])
    assert sorted(m.key.decode() for m in got.messages) == sorted(str(i) for i in ids)
    # All of them delivered before fini: none handed to a next start.
    assert "stopped; 0 record(s) handed to the next start" in text, text[-3000:]


@pytest.mark.parametrize("layout", WRONG_LAYOUTS)
def test_a_wrong_layout_is_refused_and_slurmctld_carries_on(broker, tag, layout):
    so = REPO / "build" / "layout-guard" / f"jobcomp_kafka-{RELEASE}-as-{layout}.so"
    assert so.is_file(), f"{so} missing: ci/layout-guard26.sh builds it"
    c, ids, states, up, text, _ = run_cluster(f"wrong{layout.replace('_', '')}", so, broker, tag)
    assert up, "slurmctld went down:\n" + text[-3000:]
    assert set(states.values()) == {"COMPLETED"}, states
    lines = [ln for ln in guard_lines(text) if "not taken since" not in ln]
    assert len(lines) == 1, f"{len(lines)} guard error line(s):\n" + "\n".join(lines)
    line = lines[0]
    assert GUARD_LINE in line, line
    assert f"measured on {layout.replace('_', '.')} (slurm-headers/layout_{layout}.h)" in line, line
    assert "SLURM_SRC_DIR" in line, line
    assert "does not match it: " in line, line
    # Not one line per record: the guard's line is the plugin's only error
    # (the count of records not taken comes once a minute, at fini at the latest).
    errors = [ln for ln in text.splitlines() if "error: jobcomp/kafka:" in ln and "not taken since" not in ln]
    assert errors == [line], "\n".join(errors[:10])
    # Every record was refused and counted; within a minute the count comes at fini.
    counts = [ln for ln in guard_lines(text) if "not taken since" in ln]
    assert counts and f"({JOBS} since the layout was refused)" in counts[-1], "\n".join(counts)
    # Nothing produced from garbage: the finish topic never gets a message.
    topics = broker.topics()
    if c.finish_topic in topics:
        got = broker.consume(c.finish_topic, expect=0, timeout=5, linger=3)
        assert got.messages == [], f"{len(got.messages)} record(s) produced from a refused layout"
    jk.note_number(f"{layout}: {line.split('does not match it: ')[1].split('. No job record')[0]}")


def test_a_moved_job_record_member_is_refused_by_the_record_checks(broker, tag):
    so = REPO / "build" / "layout-guard" / f"jobcomp_kafka-{RELEASE}-as-{MOVED_LAYOUT}.so"
    assert so.is_file(), f"{so} missing: ci/layout-guard26.sh builds it"
    c, ids, states, up, text, _ = run_cluster("moved", so, broker, tag)
    assert up, "slurmctld went down:\n" + text[-3000:]
    assert set(states.values()) == {"COMPLETED"}, states
    lines = [ln for ln in guard_lines(text) if "not taken since" not in ln]
    assert len(lines) == 1, f"{len(lines)} guard line(s):\n" + "\n".join(lines)
    line = lines[0]
    assert GUARD_LINE in line, line
    assert "with job_record.job_id moved 4 bytes on (TEST-ONLY)" in line, line
    # Refused by a record check, not by slurm_conf at init (which matches).
    reason = line.split("does not match it: ")[1].split(". No job record")[0]
    jk.note_number(f"{MOVED_LAYOUT}: {reason}")
    assert reason.startswith("job_record.step_id.job_id is "), line
    assert "slurm_conf" not in reason, line
    errors = [ln for ln in text.splitlines() if "error: jobcomp/kafka:" in ln and "not taken since" not in ln]
    assert errors == [line], "\n".join(errors[:10])
    # The first record was the one refused: every record is counted.
    counts = [ln for ln in guard_lines(text) if "not taken since" in ln]
    assert counts and f"({JOBS} since the layout was refused)" in counts[-1], "\n".join(counts)
    topics = broker.topics()
    if c.finish_topic in topics:
        got = broker.consume(c.finish_topic, expect=0, timeout=5, linger=3)
        assert got.messages == [], f"{len(got.messages)} record(s) produced from a refused layout"
