//! The plugin marketplace (`paved.plugins.…`): plugins are separate
//! programs on the protobuf contract that see only what an admin granted.
//!
//! - [`marketplace`]: a plugin's published versions (aggregate `plugin`):
//!   its manifest (scopes asked for, event types, delivery), deprecated or
//!   yanked.
//! - [`installation`]: one installation of a plugin (aggregate
//!   `installation`): the version it pins, the scopes granted, the team it
//!   acts for, and its durable cursor in the log.

pub mod installation;
pub mod marketplace;

#[cfg(test)]
mod tests;

use crate::name::Name;

/// The principal name of an installation's tokens: `plugin:<installation>`.
pub fn principal_name(installation: &Name) -> String {
    format!("plugin:{installation}")
}
