// SPDX-License-Identifier: GPL-2.0-or-later
//! The JobCompLoc file (librdkafka properties). Any bytes: an error sentence
//! or properties with non-empty keys free of blanks and '=', each key once, a
//! broker list among them; secrets are never displayed. Bytes that are not
//! UTF-8 go through the file reader (which must refuse them).
#![no_main]
use jobcomp_kafka::config::{display_value, is_secret_property, parse_properties, read_properties_file};
use jobcomp_kafka_fuzz::scratch_dir;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        let path = scratch_dir("config_properties").join("kafka.conf");
        std::fs::write(&path, data).unwrap();
        let error = read_properties_file(path.to_str().unwrap()).expect_err("non-UTF-8 file accepted");
        assert!(error.0.contains("not valid UTF-8"), "{}", error.0);
        return;
    };
    match parse_properties(text, "/etc/slurm/kafka.conf") {
        Err(error) => assert!(error.0.starts_with("/etc/slurm/kafka.conf"), "{}", error.0),
        Ok(props) => {
            assert!(props.iter().any(|p| p.key == "bootstrap.servers" || p.key == "metadata.broker.list"));
            for (i, p) in props.iter().enumerate() {
                assert!(!p.key.is_empty() && !p.key.contains('=') && !p.key.chars().any(char::is_whitespace));
                assert!(!p.key.starts_with('#'), "a comment became property {:?}", p.key);
                assert_eq!(p.value, p.value.trim());
                assert!(props[i + 1..].iter().all(|q| q.key != p.key), "key {} twice", p.key);
                assert!(p.line >= 1 && p.line <= text.split('\n').count());
                if is_secret_property(&p.key) && p.value != "(redacted)" {
                    assert_ne!(display_value(p), p.value, "secret {} displayed", p.key);
                }
            }
        }
    }
});
