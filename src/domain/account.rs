//! Account values parsed once at the boundary: e-mail, password, display name, phone, avatar
//! URL. A service never sees the raw strings; each parse error names the field.

use super::FieldError;

/// A normalised e-mail address (trimmed, lower-case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let email = raw.trim().to_lowercase();
        let err = |m: &str| FieldError::new("email", m);
        if email.len() > 254 {
            return Err(err("must be at most 254 characters"));
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(err("must be an e-mail address"));
        };
        let valid = !local.is_empty()
            && local.len() <= 64
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && email
                .chars()
                .all(|c| c.is_ascii_graphic() || (!c.is_ascii() && !c.is_control()));
        if !valid {
            return Err(err("must be an e-mail address"));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password of 10–128 characters, kept whole (never truncated) until it is hashed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

pub const PASSWORD_MIN_CHARS: usize = 10;
pub const PASSWORD_MAX_CHARS: usize = 128;

impl Password {
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldError> {
        let n = raw.chars().count();
        if !(PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&n) {
            return Err(FieldError::new(
                field,
                format!("must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters"),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A display name: 1–80 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let name = raw.trim();
        let n = name.chars().count();
        if n == 0 || n > 80 {
            return Err(FieldError::new(
                "display_name",
                "must be 1 to 80 characters",
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(FieldError::new(
                "display_name",
                "must not contain control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A phone number in E.164 form (`+` and 7–15 digits), spaces and dashes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let compact: String = raw
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
            .collect();
        let digits = compact.strip_prefix('+').unwrap_or("");
        let valid = (7..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if !valid {
            return Err(FieldError::new(
                "phone",
                "must be an E.164 number such as +447700900123",
            ));
        }
        Ok(Self(compact))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An https URL of at most 2048 characters (avatars).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsUrl(String);

impl HttpsUrl {
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldError> {
        let url = raw.trim();
        let valid = url.len() <= 2048
            && url
                .strip_prefix("https://")
                .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
            && url.chars().all(|c| c.is_ascii_graphic());
        if !valid {
            return Err(FieldError::new(
                field,
                "must be an https:// URL of at most 2048 characters",
            ));
        }
        Ok(Self(url.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@@x.io",
            "ada@x..io",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_are_10_to_128_characters_and_never_truncated() {
        assert!(Password::parse("123456789", "password").is_err());
        assert!(Password::parse(&"x".repeat(129), "password").is_err());
        let long = "é".repeat(128);
        assert_eq!(Password::parse(&long, "password").unwrap().expose(), long);
        assert!(
            !format!("{:?}", Password::parse("supersecret!", "p").unwrap()).contains("supersecret")
        );
    }

    #[test]
    fn display_names_and_phones_are_checked() {
        assert_eq!(DisplayName::parse("  Ada  ").unwrap().as_str(), "Ada");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse("a\u{0}b").is_err());
        assert_eq!(
            Phone::parse("+44 7700-900123").unwrap().as_str(),
            "+447700900123"
        );
        assert!(Phone::parse("07700900123").is_err());
        assert!(Phone::parse("+12").is_err());
    }

    #[test]
    fn avatar_urls_must_be_https() {
        assert!(HttpsUrl::parse("https://cdn.example.com/a.png", "avatar_url").is_ok());
        assert!(HttpsUrl::parse("http://cdn.example.com/a.png", "avatar_url").is_err());
        assert!(HttpsUrl::parse("javascript:alert(1)", "avatar_url").is_err());
    }
}
