//! `facegate watch` (the real binary) as a child process, its output collected line by line.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `facegate watch`, killed on drop.
pub struct Watch {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Watch {
    /// `facegate --models … --device cpu watch ARGS` in an empty folder (no configuration
    /// file), configured through `envs` (e.g. `FACEGATE__MQTT__PORT`).
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Watch {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_facegate"));
        cmd.arg("--models")
            .arg(super::models())
            .args(["--device", "cpu", "watch"])
            .args(args)
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("facegate watch starts");
        let out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            sink.lock().unwrap().push_str(&text);
        });
        Watch {
            child: Some(child),
            lines,
            stderr,
        }
    }

    /// What it printed on stdout so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the lines printed so far; `limit` only guards against a hang.
    pub fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&[String]) -> bool) {
        let start = Instant::now();
        while !done(&self.lines()) {
            assert!(
                start.elapsed() < limit,
                "watch: no {what} within {limit:?}; printed {:?}; stderr: {}",
                self.lines(),
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit; returns its status, stdout lines and stderr.
    pub fn wait_exit(&mut self, limit: Duration) -> (ExitStatus, Vec<String>, String) {
        let start = Instant::now();
        let child = self.child.as_mut().expect("still running");
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                start.elapsed() < limit,
                "watch did not exit within {limit:?}; printed {:?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.child = None;
        // The readers end with the pipes; give them a moment to hand over the last lines.
        let drained = Instant::now();
        while Arc::strong_count(&self.lines) > 1 || Arc::strong_count(&self.stderr) > 1 {
            if drained.elapsed() > Duration::from_secs(10) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (status, self.lines(), self.stderr.lock().unwrap().clone())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
