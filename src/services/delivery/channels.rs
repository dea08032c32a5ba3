//! The channels a message can go out on, behind one interface: email over SMTP (`lettre`),
//! SMS through a Twilio-shaped Messages API, and push through an HTTP gateway (unconfigured
//! by default). A send answers with the provider's id, or an error that says whether trying
//! again can help.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::templates::Email;
use crate::config::{EmailSettings, PushSettings, SmsSettings};

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth another attempt later (network, timeout, 4xx-transient, 5xx).
    #[error("{0}")]
    Transient(String),
    /// Will never work (bad address, refused by the provider).
    #[error("{0}")]
    Permanent(String),
}

/// What goes out: rendered for the channel.
#[derive(Debug)]
pub enum Outgoing {
    Email {
        to: String,
        message_id: String,
        mail: Email,
    },
    Text {
        to: String,
        body: String,
    },
    Push {
        user: String,
        title: String,
        body: String,
    },
}

/// One channel: sends a message, answers the provider's id for it.
pub trait Channel: Send + Sync + 'static {
    /// `email`, `sms` or `push` (the outbox's `channel`).
    fn name(&self) -> &'static str;
    fn send(
        &self,
        message: Outgoing,
    ) -> impl std::future::Future<Output = Result<String, SendError>> + Send;
}

#[derive(Clone)]
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp").field("from", &self.from).finish()
    }
}

impl Smtp {
    pub fn new(settings: &EmailSettings) -> Result<Self, String> {
        type T = AsyncSmtpTransport<Tokio1Executor>;
        let host = settings.smtp_host.as_str();
        let builder = match settings.smtp_tls.as_str() {
            "tls" => T::relay(host).map_err(|e| e.to_string())?,
            "starttls" => T::starttls_relay(host).map_err(|e| e.to_string())?,
            _ => T::builder_dangerous(host),
        };
        let mut builder = builder
            .port(settings.smtp_port)
            .timeout(Some(Duration::from_millis(settings.timeout_ms)));
        if !settings.smtp_username.is_empty() {
            builder = builder.credentials(Credentials::new(
                settings.smtp_username.clone(),
                settings.smtp_password.expose().to_owned(),
            ));
        }
        let from = settings
            .from
            .parse::<Mailbox>()
            .map_err(|e| format!("email.from: {e}"))?;
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }
}

impl Channel for Smtp {
    fn name(&self) -> &'static str {
        "email"
    }

    async fn send(&self, message: Outgoing) -> Result<String, SendError> {
        let Outgoing::Email {
            to,
            message_id,
            mail,
        } = message
        else {
            return Err(SendError::Permanent("not an email".into()));
        };
        let to = to
            .parse::<Mailbox>()
            .map_err(|e| SendError::Permanent(format!("bad address: {e}")))?;
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .message_id(Some(message_id.clone()))
            .multipart(MultiPart::alternative_plain_html(mail.text, mail.html))
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        match self.transport.send(email).await {
            Ok(_) => Ok(message_id),
            // 535 (our credentials refused) is the channel's problem, not the message's.
            Err(e) if e.is_permanent() && e.status().is_none_or(|c| c.to_string() != "535") => {
                Err(SendError::Permanent(e.to_string()))
            }
            Err(e) => Err(SendError::Transient(e.to_string())),
        }
    }
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

fn http_client() -> HttpClient {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https)
}

/// A response body is read up to this much (the provider's answer is small).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// POSTs and reads the answer (bounded in time and size): the status, and the body if it
/// could be read (an accepted message whose answer got lost is still accepted).
async fn post(
    client: &HttpClient,
    request: hyper::Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(hyper::StatusCode, Option<Bytes>), SendError> {
    let response = tokio::time::timeout(timeout, client.request(request))
        .await
        .map_err(|_| SendError::Transient("timed out".into()))?
        .map_err(|e| SendError::Transient(format!("request failed: {e}")))?;
    let status = response.status();
    let body = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES).collect();
    let body = match tokio::time::timeout(timeout, body).await {
        Ok(Ok(collected)) => Some(collected.to_bytes()),
        _ => None,
    };
    Ok((status, body))
}

/// 429 and 5xx may pass later; so may 401/403 (our credentials: a channel's problem, being
/// fixed, not the message's); other 4xx never will.
fn refused(status: hyper::StatusCode, body: &[u8]) -> SendError {
    let detail = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    let message = format!("{status}: {detail}");
    if status == hyper::StatusCode::TOO_MANY_REQUESTS
        || status == hyper::StatusCode::UNAUTHORIZED
        || status == hyper::StatusCode::FORBIDDEN
        || status.is_server_error()
    {
        SendError::Transient(message)
    } else {
        SendError::Permanent(message)
    }
}

/// The provider's id from an accepted message's answer (empty when it cannot be read: the
/// message is out either way, and sending it again would duplicate it).
fn accepted_id(body: Option<&Bytes>, field: &str) -> String {
    let id = body
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .and_then(|v| v.get(field).and_then(|s| s.as_str()).map(str::to_owned));
    if id.is_none() {
        tracing::warn!(field, "a provider accepted a message without a readable id");
    }
    id.unwrap_or_default()
}

/// SMS through Twilio's Messages API shape.
#[derive(Clone)]
pub struct TwilioSms {
    client: HttpClient,
    url: String,
    authorization: String,
    from: String,
    timeout: Duration,
}

impl std::fmt::Debug for TwilioSms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioSms").field("url", &self.url).finish()
    }
}

impl TwilioSms {
    pub fn new(settings: &SmsSettings) -> Self {
        use base64::Engine;
        let credentials = format!("{}:{}", settings.account_sid, settings.auth_token.expose());
        Self {
            client: http_client(),
            url: format!(
                "{}/2010-04-01/Accounts/{}/Messages.json",
                settings.api_base.trim_end_matches('/'),
                settings.account_sid
            ),
            authorization: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            ),
            from: settings.from.clone(),
            timeout: Duration::from_millis(settings.timeout_ms),
        }
    }
}

/// `application/x-www-form-urlencoded` pairs.
fn form(pairs: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Channel for TwilioSms {
    fn name(&self) -> &'static str {
        "sms"
    }

    async fn send(&self, message: Outgoing) -> Result<String, SendError> {
        let Outgoing::Text { to, body } = message else {
            return Err(SendError::Permanent("not a text message".into()));
        };
        let request = hyper::Request::post(&self.url)
            .header(hyper::header::AUTHORIZATION, &self.authorization)
            .header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Full::new(Bytes::from(form(&[
                ("To", &to),
                ("From", &self.from),
                ("Body", &body),
            ]))))
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        let (status, answer) = post(&self.client, request, self.timeout).await?;
        if !status.is_success() {
            return Err(refused(status, answer.as_deref().unwrap_or_default()));
        }
        Ok(accepted_id(answer.as_ref(), "sid"))
    }
}

/// Push through an HTTP gateway: `POST {api_base}` with `{user, title, body}`, answering
/// `{id}`. Not configured by default (nothing is queued for push then).
#[derive(Clone)]
pub struct PushGateway {
    client: HttpClient,
    url: String,
}

impl std::fmt::Debug for PushGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushGateway")
            .field("url", &self.url)
            .finish()
    }
}

impl PushGateway {
    pub fn new(settings: &PushSettings) -> Self {
        Self {
            client: http_client(),
            url: settings.api_base.clone(),
        }
    }
}

impl Channel for PushGateway {
    fn name(&self) -> &'static str {
        "push"
    }

    async fn send(&self, message: Outgoing) -> Result<String, SendError> {
        let Outgoing::Push { user, title, body } = message else {
            return Err(SendError::Permanent("not a push message".into()));
        };
        let payload = serde_json::json!({"user": user, "title": title, "body": body});
        let request = hyper::Request::post(&self.url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(payload.to_string())))
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        let (status, answer) = post(&self.client, request, Duration::from_secs(10)).await?;
        if !status.is_success() {
            return Err(refused(status, answer.as_deref().unwrap_or_default()));
        }
        Ok(accepted_id(answer.as_ref(), "id"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_escapes_reserved_characters() {
        assert_eq!(
            form(&[("To", "+44 7700"), ("Body", "a&b=c ü")]),
            "To=%2B44+7700&Body=a%26b%3Dc+%C3%BC"
        );
    }

    #[test]
    fn provider_answers_are_classified() {
        assert!(matches!(
            refused(hyper::StatusCode::SERVICE_UNAVAILABLE, b""),
            SendError::Transient(_)
        ));
        assert!(matches!(
            refused(hyper::StatusCode::TOO_MANY_REQUESTS, b""),
            SendError::Transient(_)
        ));
        assert!(matches!(
            refused(hyper::StatusCode::UNAUTHORIZED, b""),
            SendError::Transient(_)
        ));
        assert!(matches!(
            refused(hyper::StatusCode::BAD_REQUEST, b"{\"code\":21211}"),
            SendError::Permanent(_)
        ));
        assert_eq!(
            accepted_id(Some(&Bytes::from_static(b"{\"sid\":\"SM1\"}")), "sid"),
            "SM1"
        );
        assert_eq!(accepted_id(None, "sid"), "");
    }
}
