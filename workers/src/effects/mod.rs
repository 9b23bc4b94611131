//! Workers that act on the outside world and record what happened as events.
//!
//! - [`argocd`]: the Argo CD REST client (the subset Paved uses).
//! - [`deployer`]: carries requested deployments out through Argo CD.
//! - [`gitops`]: plans provisioning requests and commits approved plans to the GitOps repository.
//! - [`scaffolder`]: the template task runner (golden paths: publish, register, provision).

pub mod argocd;
pub mod deployer;
pub mod gitops;
pub mod plugin_webhooks;
pub mod scaffolder;
