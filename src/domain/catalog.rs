//! What may be carried: parcel categories, weights and the items that are never accepted.

use super::FieldError;

/// A category of goods the platform carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Documents,
    Clothing,
    Electronics,
    Books,
    Medicine,
    Gifts,
    FoodNonperishable,
    Other,
}

pub const ALL: [Category; 8] = [
    Category::Documents,
    Category::Clothing,
    Category::Electronics,
    Category::Books,
    Category::Medicine,
    Category::Gifts,
    Category::FoodNonperishable,
    Category::Other,
];

/// Never carried, whatever a trip accepts.
pub const PROHIBITED: [&str; 6] = [
    "weapons",
    "drugs",
    "explosives",
    "live_animals",
    "cash",
    "hazardous",
];

/// Why a category was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CategoryError {
    /// One of `PROHIBITED`: its own error code (`prohibited_item`).
    Prohibited(FieldError),
    Unknown(FieldError),
}

impl CategoryError {
    pub fn field_error(&self) -> &FieldError {
        match self {
            Self::Prohibited(e) | Self::Unknown(e) => e,
        }
    }
}

impl Category {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Documents => "documents",
            Self::Clothing => "clothing",
            Self::Electronics => "electronics",
            Self::Books => "books",
            Self::Medicine => "medicine",
            Self::Gifts => "gifts",
            Self::FoodNonperishable => "food_nonperishable",
            Self::Other => "other",
        }
    }

    pub fn parse(raw: &str, field: &str) -> Result<Self, CategoryError> {
        if let Some(c) = ALL.iter().find(|c| c.as_str() == raw) {
            return Ok(*c);
        }
        if PROHIBITED.contains(&raw) {
            return Err(CategoryError::Prohibited(FieldError::new(
                field,
                format!("`{raw}` is a prohibited item and cannot be carried"),
            )));
        }
        Err(CategoryError::Unknown(FieldError::new(
            field,
            "must be one of documents, clothing, electronics, books, medicine, gifts, food_nonperishable, other",
        )))
    }
}

/// A weight in grams within `1..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Weight(i32);

pub const MAX_TRIP_CAPACITY_GRAMS: i32 = 50_000;
pub const MAX_PARCEL_WEIGHT_GRAMS: i32 = 30_000;

impl Weight {
    pub fn parse(grams: i64, max: i32, field: &str) -> Result<Self, FieldError> {
        i32::try_from(grams)
            .ok()
            .filter(|g| (1..=max).contains(g))
            .map(Self)
            .ok_or_else(|| FieldError::new(field, format!("must be 1 to {max} grams")))
    }

    pub fn grams(&self) -> i32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_parse_and_prohibited_items_are_told_apart() {
        assert_eq!(
            Category::parse("food_nonperishable", "category").unwrap(),
            Category::FoodNonperishable
        );
        assert!(matches!(
            Category::parse("weapons", "category"),
            Err(CategoryError::Prohibited(_))
        ));
        assert!(matches!(
            Category::parse("Weapons!", "category"),
            Err(CategoryError::Unknown(_))
        ));
        for c in ALL {
            assert_eq!(Category::parse(c.as_str(), "c").unwrap(), c);
        }
    }

    #[test]
    fn weights_are_bounded() {
        assert!(Weight::parse(0, 30_000, "w").is_err());
        assert!(Weight::parse(30_001, 30_000, "w").is_err());
        assert!(Weight::parse(i64::MAX, 30_000, "w").is_err());
        assert_eq!(Weight::parse(30_000, 30_000, "w").unwrap().grams(), 30_000);
    }
}
