//! The notification providers' local stand-ins (`scripts/notify_sinks.py`): a real SMTP server
//! (aiosmtpd, installed from PyPI on first use if missing) and a Twilio-shaped SMS API, one
//! pair per test, writing what they receive to a directory of their own.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use airbar::config::Settings;
use serde_json::Value;

use super::python;

const AIOSMTPD: &str = "aiosmtpd==1.4.6";
/// The SMTP server requires AUTH with these (so the credentials path is exercised).
const SMTP_USER: &str = "airbar";
const SMTP_PASSWORD: &str = "sink-password";

pub struct Sinks {
    pub dir: PathBuf,
    pub smtp_port: u16,
    pub sms_port: u16,
}

/// Fresh stand-ins; they stop when the test process ends.
pub fn sinks() -> Sinks {
    python::ensure_installed("aiosmtpd", AIOSMTPD);
    let dir = std::env::temp_dir().join(format!("airbar-sinks-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (smtp_port, sms_port) = (python::free_port(), python::free_port());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/notify_sinks.py");
    python::start(
        Command::new("python3")
            .arg(script)
            .arg("--dir")
            .arg(&dir)
            .args([
                "--smtp-port",
                &smtp_port.to_string(),
                "--sms-port",
                &sms_port.to_string(),
                "--smtp-user",
                SMTP_USER,
                "--smtp-password",
                SMTP_PASSWORD,
                "--exit-with-parent",
            ]),
        "the notification sinks",
        &[smtp_port, sms_port],
    );
    Sinks {
        dir,
        smtp_port,
        sms_port,
    }
}

impl Sinks {
    /// Email and SMS on, pointed at these stand-ins.
    pub fn configure(&self, s: &mut Settings) {
        s.email.smtp_host = "127.0.0.1".into();
        s.email.smtp_port = self.smtp_port;
        s.email.smtp_tls = "none".into();
        s.email.smtp_username = SMTP_USER.into();
        s.email.smtp_password = airbar::config::Secret::new(SMTP_PASSWORD);
        s.sms.enabled = true;
        s.sms.api_base = format!("http://127.0.0.1:{}", self.sms_port);
    }

    fn read(&self, prefix: &str) -> Vec<Value> {
        let mut names: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix) && n.ends_with(".json"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|n| serde_json::from_slice(&std::fs::read(self.dir.join(n)).unwrap()).unwrap())
            .collect()
    }

    /// Received emails (`to`, `subject`, `message_id`, `text`, `html`, …), oldest first.
    pub fn mails(&self) -> Vec<Value> {
        self.read("mail-")
    }

    /// Received text messages (`to`, `from`, `body`, `sid`), oldest first.
    pub fn texts(&self) -> Vec<Value> {
        self.read("sms-")
    }

    /// Waits until `pick` of what arrived is satisfied (or fails after `within`).
    pub async fn wait_for<T>(
        &self,
        within: Duration,
        mut pick: impl FnMut(&Sinks) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(found) = pick(self) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "not received within {within:?}: mails {:?}, texts {:?}",
                self.mails(),
                self.texts()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Emails to `address`, once at least `n` have arrived.
    pub async fn mails_to(&self, address: &str, n: usize) -> Vec<Value> {
        self.wait_for(Duration::from_secs(15), |s| {
            let found: Vec<_> = s
                .mails()
                .into_iter()
                .filter(|m| m["to"] == address)
                .collect();
            (found.len() >= n).then_some(found)
        })
        .await
    }

    /// Received push messages (`user`, `title`, `body`, `id`), oldest first.
    pub fn pushes(&self) -> Vec<Value> {
        self.read("push-")
    }

    /// Push on, through the stand-in's gateway.
    pub fn configure_push(&self, s: &mut Settings) {
        s.push.api_base = format!("http://127.0.0.1:{}/push", self.sms_port);
    }

    /// The SMS API answers `status` to every message until `None`.
    pub fn sms_outage(&self, status: Option<u16>) {
        let flag = self.dir.join("sms-fail");
        match status {
            Some(code) => std::fs::write(flag, code.to_string()).unwrap(),
            None => {
                let _ = std::fs::remove_file(flag);
            }
        }
    }
}
