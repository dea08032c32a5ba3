//! Money: integer minor units and an ISO-4217 currency, checked arithmetic, fees in basis
//! points. No floats.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::FieldError;

/// The currencies the platform settles in, with their minor-unit exponent.
const CURRENCIES: &[(&str, u32)] = &[
    ("AUD", 2),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("INR", 2),
    ("JPY", 0),
    ("MXN", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("PLN", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("USD", 2),
    ("ZAR", 2),
];

/// A supported ISO-4217 currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(&'static str, u32);

impl Currency {
    pub fn parse(code: &str, field: &str) -> Result<Self, FieldError> {
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(c, e)| Self(c, *e))
            .ok_or_else(|| FieldError::new(field, "is not a supported ISO-4217 currency"))
    }

    pub fn code(&self) -> &'static str {
        self.0
    }

    /// Minor units per major unit (100 for EUR, 1 for JPY).
    pub fn minor_per_major(&self) -> i64 {
        10_i64.pow(self.1)
    }
}

/// An amount in minor units of a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    amount: i64,
    currency: Currency,
}

/// Money on the wire: `{"amount": 1250, "currency": "EUR"}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MoneyDto {
    /// Integer minor units (cents).
    pub amount: i64,
    /// ISO-4217 code.
    pub currency: String,
}

impl Money {
    pub fn new(amount: i64, currency: Currency) -> Self {
        Self { amount, currency }
    }

    /// A non-negative amount in a supported currency.
    pub fn parse(dto: &MoneyDto, field: &str) -> Result<Self, FieldError> {
        let currency = Currency::parse(&dto.currency, &format!("{field}.currency"))?;
        if dto.amount < 0 {
            return Err(FieldError::new(
                format!("{field}.amount"),
                "must not be negative",
            ));
        }
        Ok(Self {
            amount: dto.amount,
            currency,
        })
    }

    pub fn amount(&self) -> i64 {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn to_dto(&self) -> MoneyDto {
        MoneyDto {
            amount: self.amount,
            currency: self.currency.code().to_owned(),
        }
    }

    /// `amount × numerator / denominator`, rounded half up, or `None` on overflow.
    pub fn mul_div_round(&self, numerator: i64, denominator: i64) -> Option<Self> {
        if denominator <= 0 {
            return None;
        }
        let product = i128::from(self.amount).checked_mul(i128::from(numerator))?;
        let rounded =
            (product * 2 + i128::from(denominator)).div_euclid(2 * i128::from(denominator));
        Some(Self {
            amount: i64::try_from(rounded).ok()?,
            currency: self.currency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_currencies_parse_and_others_do_not() {
        assert_eq!(Currency::parse("EUR", "c").unwrap().minor_per_major(), 100);
        assert_eq!(Currency::parse("JPY", "c").unwrap().minor_per_major(), 1);
        assert!(Currency::parse("eur", "c").is_err());
        assert!(Currency::parse("XXX", "c").is_err());
    }

    #[test]
    fn negative_amounts_are_rejected_with_the_field_named() {
        let err = Money::parse(
            &MoneyDto {
                amount: -1,
                currency: "EUR".into(),
            },
            "price_per_kg",
        )
        .unwrap_err();
        assert_eq!(err.field, "price_per_kg.amount");
        let err = Money::parse(
            &MoneyDto {
                amount: 1,
                currency: "ABC".into(),
            },
            "price_per_kg",
        )
        .unwrap_err();
        assert_eq!(err.field, "price_per_kg.currency");
    }

    #[test]
    fn scaling_rounds_half_up_and_detects_overflow() {
        let eur = Currency::parse("EUR", "c").unwrap();
        // 10.00 per kg × 1.250 kg = 12.50
        assert_eq!(
            Money::new(1000, eur)
                .mul_div_round(1250, 1000)
                .unwrap()
                .amount(),
            1250
        );
        // 0.01 per kg × 0.5 kg = 0.005 → 0.01
        assert_eq!(
            Money::new(1, eur)
                .mul_div_round(500, 1000)
                .unwrap()
                .amount(),
            1
        );
        assert_eq!(
            Money::new(1, eur)
                .mul_div_round(499, 1000)
                .unwrap()
                .amount(),
            0
        );
        assert!(Money::new(i64::MAX, eur).mul_div_round(2, 1).is_none());
    }
}
