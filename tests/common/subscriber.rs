//! A `mosquitto_sub` on everything facegate publishes, collected for assertions.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Everything a subscriber saw, as (topic, payload) in arrival order.
pub struct Subscriber {
    child: Child,
    pub lines: Arc<Mutex<Vec<(String, String)>>>,
}

impl Subscriber {
    /// A durable QoS 1 subscription (clean session off), so that messages sent while it is
    /// cut off by a broker restart reach it afterwards.
    pub fn start(port: u16, id: &str) -> Subscriber {
        let mut child = Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-q",
                "1",
                "-c",
                "-i",
                id,
                "-v",
            ])
            .args(["-t", "facegate/#"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (Debian mosquitto-clients) is needed");
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some((topic, payload)) = line.split_once(' ') {
                    sink.lock().unwrap().push((topic.to_string(), payload.to_string()));
                }
            }
        });
        let sub = Subscriber { child, lines };
        // Subscribed once a probe published now comes back (before that it may be lost).
        let start = Instant::now();
        while sub.messages("facegate/test-probe").is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "mosquitto_sub did not subscribe"
            );
            let probe = Command::new("mosquitto_pub")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-t",
                    "facegate/test-probe",
                    "-m",
                    "probe",
                ])
                .status()
                .expect("mosquitto_pub (Debian mosquitto-clients) is needed");
            assert!(probe.success(), "mosquitto_pub failed");
            std::thread::sleep(Duration::from_millis(100));
        }
        sub
    }

    pub fn messages(&self, topic_suffix: &str) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t.ends_with(topic_suffix))
            .map(|(_, p)| p.clone())
            .collect()
    }

    pub fn events(&self) -> Vec<Value> {
        self.messages("/events")
            .iter()
            .map(|p| serde_json::from_str(p).expect("event is JSON"))
            .collect()
    }

    pub fn wait_until(&self, what: &str, timeout: Duration, f: impl Fn(&Subscriber) -> bool) {
        let start = Instant::now();
        while !f(self) {
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {what}; saw {:?}",
                self.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
