//! An open Server-Sent Events response, read record by record.

use std::time::Duration;

use serde_json::Value;

pub struct EventStream {
    pub res: reqwest::Response,
    pub buf: String,
}

impl EventStream {
    /// A 200 `text/event-stream` response.
    pub fn new(res: reqwest::Response) -> Self {
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        Self {
            res,
            buf: String::new(),
        }
    }

    /// The next record with data, or `None` when the stream ends: (id, data); comments and
    /// `retry:` are skipped. Fails after 10 s without one.
    pub async fn next_or_end(&mut self) -> Option<(Option<String>, Value)> {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let record: String = self.buf.drain(..end + 2).collect();
                let mut id = None;
                let mut data = None;
                for line in record.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).unwrap());
                    }
                }
                if let Some(data) = data {
                    return Some((id, data));
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.res.chunk())
                .await
                .expect("an event in time")
                .unwrap()?;
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next record with data: (id, data).
    pub async fn next(&mut self) -> (Option<String>, Value) {
        self.next_or_end().await.expect("the stream stays open")
    }
}
