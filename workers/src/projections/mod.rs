//! The projections: each writes its own tables, from its own context's events.

pub mod catalog;

pub use catalog::CatalogProjection;
