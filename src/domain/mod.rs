//! Pure types and rules, no I/O: typed ids, and (as their issues land) Money, Weight, LatLng,
//! the match state machine, scoring, fee arithmetic, code generation. Depends on nothing else
//! in the crate.

pub mod account;
pub mod catalog;
pub mod chat;
pub mod custody;
pub mod gazetteer;
pub mod gcra;
pub mod geo;
pub mod ids;
pub mod listing;
pub mod match_index;
pub mod matching;
pub mod money;
pub mod tracking;

use serde::Serialize;
use utoipa::ToSchema;

/// One input field that failed to parse or validate, with a message for the client.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
