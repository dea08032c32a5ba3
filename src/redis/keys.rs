//! The one place Redis key and pub/sub channel names are made, so that every one of them
//! carries the configured prefix (tests and deployments sharing a Redis never collide).

/// Builds prefixed key and channel names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix><kind>:<part>:<part>…`, e.g. `airbar:session:<id>`.
    pub fn key(&self, kind: &str, parts: &[&str]) -> String {
        let mut out = String::with_capacity(self.prefix.len() + kind.len() + parts.len() * 40);
        out.push_str(&self.prefix);
        out.push_str(kind);
        for part in parts {
            out.push(':');
            out.push_str(part);
        }
        out
    }

    /// `<prefix>ch:<topic>`: a pub/sub channel.
    pub fn channel(&self, topic: &str) -> String {
        self.key("ch", &[topic])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_channels_carry_the_prefix() {
        let k = Keys::new("airbar:t1:");
        assert_eq!(k.key("session", &["abc"]), "airbar:t1:session:abc");
        assert_eq!(k.key("rl", &["ip", "1.2.3.4"]), "airbar:t1:rl:ip:1.2.3.4");
        assert_eq!(k.channel("events"), "airbar:t1:ch:events");
    }
}
