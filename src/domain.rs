//! Pure types and rules, no I/O: typed ids, and (as their issues land) Money, Weight, LatLng,
//! the match state machine, scoring, fee arithmetic, code generation. Depends on nothing else
//! in the crate.

pub mod ids;
