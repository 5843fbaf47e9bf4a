// SPDX-License-Identifier: GPL-2.0-or-later
//! One Apache Kafka node (KRaft, broker and controller) for a host test,
//! started and stopped through the project's rig, ci/rig/kafka.sh (which
//! installs Kafka from Maven Central on a fresh machine). Stopped on drop.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

fn rig_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ci/rig/kafka.sh")
}

pub struct Kafka {
    dir: crate::common::TempDir,
    pub port: u16,
}

impl Kafka {
    /// A node of `version` (a kafka.sh alias: "4", "3.9") on 127.0.0.1:`port`
    /// (its controller on `port` + 1), with a small heap; returns once it serves
    /// metadata.
    pub fn start(version: &str, port: u16) -> Kafka {
        let dir = crate::common::TempDir::new(&format!("kafka-{port}"));
        let out = Command::new(rig_script())
            .arg("start")
            .arg(dir.path().join("node"))
            .args(["--port", &port.to_string(), "--version", version, "--heap", "256m"])
            .output()
            .expect("run ci/rig/kafka.sh");
        let kafka = Kafka { dir, port };
        assert!(
            out.status.success(),
            "kafka.sh start: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stderr).lines().rev().find(|l| l.contains("up in")).map(str::to_string);
        println!("Apache Kafka {version} on 127.0.0.1:{port}: {}", line.unwrap_or_default());
        kafka
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        let _ = Command::new(rig_script()).arg("stop").arg(self.dir.path().join("node")).output();
    }
}
