//! Python test tools (localstripe, the notification stand-ins): installed from PyPI on first
//! use when missing, started as child processes that live as long as the test process.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());
static INSTALLED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `pip install`s `spec` unless `import module` works (once per test process).
pub fn ensure_installed(module: &'static str, spec: &str) {
    let mut done = INSTALLED.lock().unwrap();
    if done.contains(&module) {
        return;
    }
    let present = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        let ok = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", spec])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "could not pip install {spec}");
    }
    done.push(module);
}

/// Starts `python3 <args>` and waits until every port in `ports` accepts connections. The
/// script must exit with its parent (`--exit-with-parent`).
pub fn start(command: &mut Command, what: &str, ports: &[u16]) {
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    CHILDREN.lock().unwrap().push(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    for port in ports {
        while TcpStream::connect(("127.0.0.1", *port)).is_err() {
            assert!(Instant::now() < deadline, "{what} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
