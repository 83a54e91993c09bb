//! pipeline: message contracts and stages (being built).
