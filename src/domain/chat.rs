//! Chat rules, pure: contact details are masked until a match is paid, and what a valid message
//! and client message id look like.

use super::FieldError;

pub const MAX_BODY_CHARS: usize = 2000;
pub const MAX_CLIENT_ID_CHARS: usize = 64;
const HIDDEN: &str = "[hidden]";
const MIN_PHONE_DIGITS: usize = 7;

pub fn parse_body(raw: &str) -> Result<String, FieldError> {
    let body = raw.trim();
    let n = body.chars().count();
    if n == 0 || n > MAX_BODY_CHARS {
        return Err(FieldError::new("body", "must be 1 to 2000 characters"));
    }
    Ok(body.to_owned())
}

pub fn parse_client_msg_id(raw: &str) -> Result<String, FieldError> {
    let id = raw.trim();
    let ok = !id.is_empty()
        && id.chars().count() <= MAX_CLIENT_ID_CHARS
        && id.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(id.to_owned())
    } else {
        Err(FieldError::new(
            "client_msg_id",
            "must be 1 to 64 printable ASCII characters",
        ))
    }
}

fn is_email(token: &str) -> bool {
    let t = token.trim_matches(|c: char| !c.is_alphanumeric());
    match t.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
        }
        None => false,
    }
}

/// Replaces e-mail addresses and phone numbers (7+ digits, spaces, dashes, dots, brackets and
/// a leading + allowed) with `[hidden]`.
pub fn mask_contacts(body: &str) -> String {
    let words: Vec<String> = body
        .split(' ')
        .map(|w| {
            if is_email(w) {
                HIDDEN.to_owned()
            } else {
                w.to_owned()
            }
        })
        .collect();
    let text = words.join(" ");
    let chars: Vec<char> = text.chars().collect();
    let phone_char = |c: char| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')' | '+');
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit()
            || (chars[i] == '+' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let mut j = i;
            while j < chars.len() && phone_char(chars[j]) {
                j += 1;
            }
            // Do not swallow trailing separators.
            let mut end = j;
            while end > i && !chars[end - 1].is_ascii_digit() {
                end -= 1;
            }
            let digits = chars[i..end].iter().filter(|c| c.is_ascii_digit()).count();
            if digits >= MIN_PHONE_DIGITS {
                out.push_str(HIDDEN);
            } else {
                out.extend(&chars[i..end]);
            }
            i = end.max(i + 1);
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_phone_numbers_are_masked_and_the_rest_kept() {
        assert_eq!(
            mask_contacts("mail me at ann@example.com, ok?"),
            "mail me at [hidden] ok?"
        );
        assert_eq!(
            mask_contacts("call +44 7700 900123 tonight"),
            "call [hidden] tonight"
        );
        assert_eq!(mask_contacts("or (212) 555-0123."), "or ([hidden].");
        assert_eq!(
            mask_contacts("gate 12, 3 bags, 2026 flight"),
            "gate 12, 3 bags, 2026 flight"
        );
        assert_eq!(mask_contacts("no contacts here"), "no contacts here");
    }

    #[test]
    fn bodies_and_client_ids_are_checked() {
        assert!(parse_body("   ").is_err());
        assert!(parse_body(&"x".repeat(2001)).is_err());
        assert_eq!(parse_body(" hi ").unwrap(), "hi");
        assert!(parse_client_msg_id("").is_err());
        assert!(parse_client_msg_id("a b").is_err());
        assert!(parse_client_msg_id(&"a".repeat(65)).is_err());
        assert_eq!(parse_client_msg_id("c-1").unwrap(), "c-1");
    }
}
