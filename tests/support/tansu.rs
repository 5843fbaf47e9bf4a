// SPDX-License-Identifier: GPL-2.0-or-later
//! A real broker (tansu, from the rig venv), a TCP proxy of our own in front of
//! it that counts bytes and can lose a produce request's acknowledgement, and a
//! byte-exact consumer (ci/rig/consume.py, confluent-kafka: a librdkafka build
//! other than the plugin's). Used by tests/compression.rs and
//! tests/retry_duplicates.rs; ports 20200-20299 on 127.0.0.1 only.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rig_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ci/rig/tansu.sh")
}

/// `ci/rig/tansu.sh <what>` (creates the venv on a fresh machine).
fn rig_output(what: &str) -> String {
    let out = Command::new(rig_script()).arg(what).output().expect("run ci/rig/tansu.sh");
    assert!(out.status.success(), "tansu.sh {what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn wait_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// tansu on 127.0.0.1:`port` (memory storage), advertising `advertised` (the
/// proxy's port when clients must come through it). Killed on drop.
pub struct Tansu {
    child: Child,
    pub port: u16,
    pub advertised: u16,
}

impl Tansu {
    pub fn start(port: u16, advertised: u16) -> Tansu {
        // A broker left on the port (a killed earlier run) would be read
        // instead of ours, with its records: refuse to start on it.
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "127.0.0.1:{port} is taken (a tansu left by an earlier run?): stop it first"
        );
        let bin = rig_output("bin");
        let log = std::fs::File::create(std::env::temp_dir().join(format!("jk-tansu-{port}.log"))).unwrap();
        let child = Command::new(bin)
            .args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{port}")])
            .args(["--advertised-listener-url", &format!("tcp://127.0.0.1:{advertised}")])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        let t = Tansu { child, port, advertised };
        assert!(wait_port(port, Duration::from_secs(20)), "tansu did not listen on {port}");
        t
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.advertised)
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The plugin started in the C host (init, set_location) with a JobCompLoc
/// file of `properties` (key=value lines) and JobCompParams topic=`topic`; the
/// directory holds the file and StateSaveLocation.
pub fn started_host(tag: &str, properties: &str, topic: &str) -> (crate::common::TempDir, crate::common::Host) {
    let dir = crate::common::TempDir::new(tag);
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let loc = dir.path().join("kafka.conf");
    std::fs::write(&loc, properties).unwrap();
    let mut host = crate::common::Host::slurmctld();
    host.conf(&[
        ("cluster", "jkreal"),
        ("loc", &loc.to_string_lossy()),
        ("state", &state.to_string_lossy()),
        ("params", &format!("topic={topic}")),
    ]);
    host.ok("init");
    host.ok("set_location");
    (dir, host)
}

/// One message as consume.py read it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Consumed {
    pub partition: i64,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

fn b64(text: &str) -> Vec<u8> {
    let digit = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= digit(c) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// Reads `topic` from its beginning until `expect` messages are in, and
/// `linger` s more for extra ones (ci/rig/consume.py --exact).
pub fn consume(bootstrap: &str, topic: &str, expect: usize) -> Vec<Consumed> {
    let python = rig_output("python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ci/rig/consume.py");
    let out = Command::new(python)
        .arg(script)
        .args(["--bootstrap", bootstrap, "--topic", topic, "--from-beginning"])
        .args(["--expect", &expect.to_string(), "--exact", "--linger", "3", "--timeout", "90"])
        .output()
        .expect("run consume.py");
    assert!(
        matches!(out.status.code(), Some(0 | 3 | 5)),
        "consume.py {topic}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.code() != Some(0) {
        eprintln!("consume.py {topic}: {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let mut messages = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let o: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = match (o.get("key_b64").and_then(|v| v.as_str()), o["key"].as_str()) {
            (Some(k), _) => Some(b64(k)),
            (None, Some(k)) => Some(k.as_bytes().to_vec()),
            _ => None,
        };
        messages.push(Consumed {
            partition: o["partition"].as_i64().unwrap(),
            offset: o["offset"].as_i64().unwrap(),
            key,
            value: o["value_b64"].as_str().map(b64).unwrap_or_default(),
        });
    }
    messages
}

/// A TCP proxy 127.0.0.1:`port` -> 127.0.0.1:`upstream` that counts the bytes
/// clients send, and, when armed, loses one produce acknowledgement: it
/// forwards the next Produce request (api key 0) to the broker, waits for the
/// broker's response to it, and then closes both connections instead of
/// passing the response on (a connection cut between send and ack).
pub struct Proxy {
    pub port: u16,
    pub bytes_up: Arc<AtomicU64>,
    /// Acknowledgements still to lose.
    pub cuts_left: Arc<AtomicUsize>,
    /// Acknowledgements lost so far.
    pub cuts_done: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(port: u16, upstream: u16) -> Proxy {
        Proxy::start_rewriting(port, upstream, false)
    }

    /// With `advertise`: for a broker that advertises its own port (no option
    /// to advertise another), the proxy replaces 127.0.0.1:`upstream` with
    /// 127.0.0.1:`port` in the responses it passes on (the same length), so that
    /// clients keep coming through it.
    pub fn start_rewriting(port: u16, upstream: u16, advertise: bool) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| panic!("bind {port}: {e}"));
        let proxy = Proxy {
            port,
            bytes_up: Arc::default(),
            cuts_left: Arc::default(),
            cuts_done: Arc::default(),
            stop: Arc::default(),
        };
        let (bytes_up, cuts_left, cuts_done, stop) =
            (proxy.bytes_up.clone(), proxy.cuts_left.clone(), proxy.cuts_done.clone(), proxy.stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(broker) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let (bytes_up, cuts_left, cuts_done) = (bytes_up.clone(), cuts_left.clone(), cuts_done.clone());
                let rewrite = advertise.then_some((upstream, port));
                std::thread::spawn(move || relay(client, broker, bytes_up, cuts_left, cuts_done, rewrite));
            }
        });
        proxy
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut frame = len.to_vec();
    frame.resize(4 + u32::from_be_bytes(len) as usize, 0);
    stream.read_exact(&mut frame[4..]).ok()?;
    Some(frame)
}

/// Kafka frames: size(4), then a request's api_key(2) api_version(2)
/// correlation_id(4), a response's correlation_id(4).
fn relay(
    mut client: TcpStream,
    mut broker: TcpStream,
    bytes_up: Arc<AtomicU64>,
    cuts_left: Arc<AtomicUsize>,
    cuts_done: Arc<AtomicUsize>,
    rewrite: Option<(u16, u16)>,
) {
    // The correlation id whose response is to be lost (-1: none).
    let doomed = Arc::new(std::sync::atomic::AtomicI64::new(-1));
    let (mut client_r, mut broker_w) = (client.try_clone().unwrap(), broker.try_clone().unwrap());
    let doomed_up = doomed.clone();
    let up = std::thread::spawn(move || {
        while let Some(frame) = read_frame(&mut client_r) {
            bytes_up.fetch_add(frame.len() as u64, Ordering::Relaxed);
            let api_key = i16::from_be_bytes([frame[4], frame[5]]);
            let correlation = i32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]);
            if api_key == 0
                && doomed_up.load(Ordering::SeqCst) < 0
                && cuts_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
            {
                doomed_up.store(correlation as i64, Ordering::SeqCst);
            }
            if broker_w.write_all(&frame).is_err() {
                break;
            }
        }
        let _ = broker_w.shutdown(Shutdown::Both);
    });
    while let Some(mut frame) = read_frame(&mut broker) {
        if let Some((from, to)) = rewrite {
            let mut needle = b"127.0.0.1".to_vec();
            needle.extend_from_slice(&i32::from(from).to_be_bytes());
            let mut at = 0;
            while let Some(i) = frame[at..].windows(needle.len()).position(|w| w == needle.as_slice()) {
                let port_at = at + i + 9;
                frame[port_at..port_at + 4].copy_from_slice(&i32::from(to).to_be_bytes());
                at = port_at + 4;
            }
        }
        let correlation = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]) as i64;
        if correlation == doomed.load(Ordering::SeqCst) {
            cuts_done.fetch_add(1, Ordering::SeqCst);
            break;
        }
        if client.write_all(&frame).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = broker.shutdown(Shutdown::Both);
    let _ = up.join();
}
