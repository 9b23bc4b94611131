//! The projections: each writes its own tables, from its own context's events.

pub mod audit;
pub mod catalog;
pub mod delivery;
pub mod plugins;
pub mod provisioning;
pub mod surveys;
pub mod templates;

pub use audit::AuditProjection;
pub use catalog::CatalogProjection;
pub use delivery::DeliveryProjection;
pub use plugins::PluginsProjection;
pub use provisioning::ProvisioningProjection;
pub use surveys::SurveysProjection;
pub use templates::TemplatesProjection;
