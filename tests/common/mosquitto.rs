//! Debian's Mosquitto for tests, started on a free port in a scratch folder and killed on
//! drop. A missing mosquitto fails the test: these tests need a real broker.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use super::TempDir;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn mosquitto_binary() -> PathBuf {
    let candidates = [
        PathBuf::from("/usr/sbin/mosquitto"),
        PathBuf::from("/usr/bin/mosquitto"),
    ];
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("mosquitto is not installed (Debian: apt-get install mosquitto); these tests need a real broker")
    })
}

/// What Mosquitto keeps across a restart.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    Off,
    /// Sessions and queued messages saved when it stops on SIGTERM.
    OnExit,
    /// Saved after every change too, so that even SIGKILL loses no session.
    EveryChange,
}

/// Mosquitto on 127.0.0.1:`port`, killed on drop.
pub struct Mosquitto {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl Mosquitto {
    pub fn start(persistence: Persistence) -> Mosquitto {
        Mosquitto::start_on(free_port(), persistence)
    }

    pub fn start_on(port: u16, persistence: Persistence) -> Mosquitto {
        Mosquitto::start_with(port, persistence, |_| String::new())
    }

    /// `extra` adds configuration (e.g. another listener) given the broker's folder.
    pub fn start_with(port: u16, persistence: Persistence, extra: impl FnOnce(&Path) -> String) -> Mosquitto {
        let dir = TempDir::new("mosquitto");
        let mut conf = format!("listener {port} 127.0.0.1\nallow_anonymous true\n");
        conf += &extra(dir.path());
        if persistence == Persistence::Off {
            conf += "persistence false\n";
        } else {
            conf += &format!("persistence true\npersistence_location {}/\n", dir.path().display());
        }
        if persistence == Persistence::EveryChange {
            conf += "autosave_on_changes true\nautosave_interval 1\n";
        }
        // Run as root, mosquitto would switch to the `mosquitto` user, which cannot write here.
        let user = Process::new("id").arg("-un").output().unwrap();
        conf += &format!("user {}\n", String::from_utf8_lossy(&user.stdout).trim());
        std::fs::write(dir.path().join("mosquitto.conf"), conf).unwrap();
        let mut m = Mosquitto { port, dir, child: None };
        m.run();
        m
    }

    pub fn run(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::File::create(self.dir.path().join("mosquitto.log")).unwrap();
        let child = Process::new(mosquitto_binary())
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("cannot start mosquitto");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            if exited.is_some() || started.elapsed() > Duration::from_secs(5) {
                panic!("mosquitto did not start ({exited:?}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM (mosquitto saves its state) and wait for the exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Process::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(5) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mosquitto did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGSTOP: connections stay open, nothing is read or acknowledged.
    pub fn pause(&self) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Process::new("kill").arg("-STOP").arg(pid).status().unwrap().success());
    }

    /// SIGKILL: gone at once, state since the last save lost, sockets reset.
    pub fn kill(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
