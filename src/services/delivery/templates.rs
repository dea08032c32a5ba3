//! Message templates (`templates/<locale>/<channel>/<kind>.j2`, compiled into the binary so a
//! deployment cannot run with a missing one), rendered with minijinja. In-app: blocks `title`
//! and `body`. Email: blocks `subject` and `text`, and an HTML body from the shared layout
//! (auto-escaped). SMS: the whole template. Rendered bodies are never logged.

use minijinja::{Environment, Value};
use serde::Serialize;

use crate::domain::money::Currency;

/// Every kind with templates for the in-app, email and SMS channels.
macro_rules! kinds {
    ($($kind:literal),* $(,)?) => {
        &[$((
            $kind,
            include_str!(concat!("../../../templates/en/in_app/", $kind, ".j2")),
            include_str!(concat!("../../../templates/en/email/", $kind, ".j2")),
            include_str!(concat!("../../../templates/en/sms/", $kind, ".j2")),
        )),*]
    };
}

type Sources = &'static [(&'static str, &'static str, &'static str, &'static str)];

const EN: Sources = kinds!(
    "match_requested",
    "match_accepted",
    "match_declined",
    "match_cancelled",
    "match_expired",
    "match_paid",
    "parcel_picked_up",
    "parcel_delivered",
    "funds_released",
    "match_disputed",
    "refund_issued",
    "withdrawal_paid",
    "withdrawal_failed",
    "new_login",
    "password_changed",
    "chat_message",
);

/// Messages to a parcel's recipient (no account, so no in-app version).
pub const RECIPIENT_CODE: &str = "recipient_delivery_code";

/// What a template may use.
#[derive(Debug, Default, Serialize)]
pub struct Context<'a> {
    /// The notification's data (ids, amounts; never personal data beyond the event's).
    pub data: Option<&'a serde_json::Value>,
    /// Minutes the sender has to pay an accepted request.
    pub payment_window_minutes: u64,
    /// The recipient's delivery code (derived at send time, never stored with the message).
    pub code: Option<&'a str>,
    pub tracking_url: Option<&'a str>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Email {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
#[error("template {name}: {source}")]
pub struct TemplateError {
    name: String,
    source: minijinja::Error,
}

#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
    locale: String,
}

impl Templates {
    /// The template set of `locale` (`en` is the only one so far; configuration checks it).
    pub fn new(locale: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_keep_trailing_newline(false);
        env.set_trim_blocks(true);
        env.add_filter("money", money);
        let add = |env: &mut Environment<'static>, name: String, src: &'static str| {
            env.add_template_owned(name.clone(), src)
                .map_err(|source| TemplateError { name, source })
        };
        add(
            &mut env,
            "en/email/_layout.j2".into(),
            include_str!("../../../templates/en/email/_layout.j2"),
        )?;
        for (kind, in_app, email, sms) in EN {
            add(&mut env, format!("en/in_app/{kind}.j2"), in_app)?;
            add(&mut env, format!("en/email/{kind}.j2"), email)?;
            add(&mut env, format!("en/sms/{kind}.j2"), sms)?;
        }
        add(
            &mut env,
            format!("en/email/{RECIPIENT_CODE}.j2"),
            include_str!("../../../templates/en/email/recipient_delivery_code.j2"),
        )?;
        add(
            &mut env,
            format!("en/sms/{RECIPIENT_CODE}.j2"),
            include_str!("../../../templates/en/sms/recipient_delivery_code.j2"),
        )?;
        let templates = Self {
            env,
            locale: locale.to_owned(),
        };
        templates.check()?;
        Ok(templates)
    }

    /// Renders every template once with sample data, so a broken one stops the start-up.
    fn check(&self) -> Result<(), TemplateError> {
        let data = serde_json::json!({"amount": {"amount": 1250, "currency": "EUR"}});
        let ctx = Context {
            data: Some(&data),
            payment_window_minutes: 60,
            code: Some("123456"),
            tracking_url: Some("https://airbar.example/api/track/x"),
        };
        for (kind, ..) in EN {
            self.in_app(kind, &ctx)?;
            self.email(kind, &ctx)?;
            self.sms(kind, &ctx)?;
        }
        self.email(RECIPIENT_CODE, &ctx)?;
        self.sms(RECIPIENT_CODE, &ctx)?;
        Ok(())
    }

    fn name(&self, channel: &str, kind: &str) -> String {
        format!("{}/{channel}/{kind}.j2", self.locale)
    }

    fn err(name: &str) -> impl FnOnce(minijinja::Error) -> TemplateError + '_ {
        move |source| TemplateError {
            name: name.to_owned(),
            source,
        }
    }

    /// (title, body) of the in-app notification.
    pub fn in_app(&self, kind: &str, ctx: &Context<'_>) -> Result<(String, String), TemplateError> {
        let name = self.name("in_app", kind);
        let tmpl = self.env.get_template(&name).map_err(Self::err(&name))?;
        let mut done = tmpl.render_captured(ctx).map_err(Self::err(&name))?;
        let (title, body) = done
            .with_state_mut(|state| {
                Ok::<_, minijinja::Error>((
                    state.render_block("title")?,
                    state.render_block("body")?,
                ))
            })
            .map_err(Self::err(&name))?;
        Ok((title.trim().to_owned(), body.trim().to_owned()))
    }

    pub fn email(&self, kind: &str, ctx: &Context<'_>) -> Result<Email, TemplateError> {
        let name = self.name("email", kind);
        let tmpl = self.env.get_template(&name).map_err(Self::err(&name))?;
        let mut done = tmpl.render_captured(ctx).map_err(Self::err(&name))?;
        let (subject, text, html) = done
            .with_state_mut(|state| {
                Ok::<_, minijinja::Error>((
                    state.render_block("subject")?,
                    state.render_block("text")?,
                    state.render_block("html")?,
                ))
            })
            .map_err(Self::err(&name))?;
        Ok(Email {
            subject: subject.trim().replace(['\r', '\n'], " "),
            text: text.trim().to_owned(),
            html: html.trim().to_owned(),
        })
    }

    pub fn sms(&self, kind: &str, ctx: &Context<'_>) -> Result<String, TemplateError> {
        let name = self.name("sms", kind);
        let tmpl = self.env.get_template(&name).map_err(Self::err(&name))?;
        Ok(tmpl
            .render(ctx)
            .map_err(Self::err(&name))?
            .trim()
            .to_owned())
    }
}

/// `{{ data.amount | money }}`: `{amount, currency}` in minor units → `12.50 EUR`.
fn money(value: Value) -> Result<String, minijinja::Error> {
    let bad = || {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            "money wants {amount, currency}",
        )
    };
    let amount = value
        .get_attr("amount")
        .ok()
        .and_then(|a| i64::try_from(a).ok())
        .ok_or_else(bad)?;
    let code = value.get_attr("currency").map_err(|_| bad())?;
    let currency =
        Currency::parse(code.as_str().ok_or_else(bad)?, "currency").map_err(|_| bad())?;
    Ok(format_money(amount, currency))
}

pub fn format_money(amount: i64, currency: Currency) -> String {
    let per = currency.minor_per_major();
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    let per_u = per.unsigned_abs().max(1);
    let digits = per_u.to_string().len() - 1;
    if digits == 0 {
        format!("{sign}{abs} {}", currency.code())
    } else {
        format!(
            "{sign}{}.{:0digits$} {}",
            abs / per_u,
            abs % per_u,
            currency.code()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templates() -> Templates {
        Templates::new("en").unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn every_template_renders() {
        templates();
    }

    #[test]
    fn money_is_formatted_in_major_units() {
        let eur = Currency::parse("EUR", "c").unwrap_or_else(|_| unreachable!());
        assert_eq!(format_money(1250, eur), "12.50 EUR");
        assert_eq!(format_money(5, eur), "0.05 EUR");
    }

    #[test]
    fn email_html_escapes_what_the_event_carries() {
        let data = serde_json::json!({"device": "<script>x</script> & co"});
        let ctx = Context {
            data: Some(&data),
            ..Context::default()
        };
        let mail = templates()
            .email("new_login", &ctx)
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(
            mail.text.contains("<script>x</script> & co"),
            "{}",
            mail.text
        );
        assert!(!mail.html.contains("<script>"), "{}", mail.html);
        assert!(mail.html.contains("&lt;script&gt;"), "{}", mail.html);
        assert_eq!(mail.subject, "New sign-in to your Airbar account");
    }

    #[test]
    fn recipient_messages_carry_the_code_and_link() {
        let data = serde_json::json!({"reissued": false});
        let ctx = Context {
            data: Some(&data),
            code: Some("042137"),
            tracking_url: Some("http://h/api/track/abc"),
            ..Context::default()
        };
        let t = templates();
        let mail = t
            .email(RECIPIENT_CODE, &ctx)
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(mail.text.contains("042137") && mail.text.contains("http://h/api/track/abc"));
        // Escaped as HTML (`/` → `&#x2f;`, which an attribute decodes back).
        let html = mail.html.replace("&#x2f;", "/");
        assert!(
            html.contains("042137") && html.contains("href=\"http://h/api/track/abc\""),
            "{html}"
        );
        let sms = t
            .sms(RECIPIENT_CODE, &ctx)
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(sms.contains("042137") && sms.len() <= 320, "{sms}");
        let (title, body) = t
            .in_app(
                "refund_issued",
                &Context {
                    data: Some(&serde_json::json!({"amount": {"amount": 800, "currency": "EUR"}})),
                    ..Context::default()
                },
            )
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(title, "Refund issued");
        assert!(body.contains("8.00 EUR"), "{body}");
    }
}
