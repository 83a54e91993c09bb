//! The templates (maud: every value interpolated is HTML-escaped).

pub mod board;
pub mod charts;
pub mod format;
pub mod layout;
pub mod widgets;
