//! `PAVED_PROVISIONING_CONFIG`: the GitOps repository, the writer's timing,
//! and the domain's rules (policy, quotas, tiers, sizes, rendering).

use std::path::{Path, PathBuf};

use paved_domain::provisioning::Rules;
use paved_domain::provisioning::render;
use serde::Deserialize;

/// `PAVED_PROVISIONING_CONFIG`: the repository, and the rules requests are
/// decided and rendered by (see `paved_domain::provisioning::Rules`).
///
/// ```yaml
/// repository:
///   url: https://github.com/acme/gitops.git   # or a local path, or git@host:org/repo.git
///   branch: main
///   token_env: GITOPS_TOKEN                   # HTTPS: or token_file
///   ssh_key_file: /run/secrets/gitops_key     # SSH
///   author_name: Paved
///   author_email: paved@example.com
///   workdir: /var/lib/paved/gitops            # the writer's clone
/// policy: { ... }
/// quotas: { ... }
/// tiers: { ... }
/// sizes: { ... }
/// render: { ... }
/// timing: { scan_ms: 500, push_attempts: 10 }
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisioningConfig {
    #[serde(default)]
    pub repository: Option<RepositoryConfig>,
    #[serde(default)]
    pub policy: Option<paved_domain::provisioning::Policy>,
    #[serde(default)]
    pub quotas: Option<paved_domain::provisioning::Quotas>,
    #[serde(default)]
    pub tiers: Option<std::collections::BTreeMap<String, paved_domain::provisioning::Tier>>,
    #[serde(default)]
    pub sizes: Option<std::collections::BTreeMap<String, render::DatabaseSize>>,
    #[serde(default)]
    pub render: Option<render::RenderSettings>,
    #[serde(default)]
    pub timing: GitTiming,
}

impl ProvisioningConfig {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The rules: what the file says, the defaults for what it leaves out.
    pub fn rules(&self) -> Rules {
        let d = Rules::default();
        Rules {
            policy: self.policy.clone().unwrap_or(d.policy),
            quotas: self.quotas.clone().unwrap_or(d.quotas),
            tiers: self.tiers.clone().unwrap_or(d.tiers),
            sizes: self.sizes.clone().unwrap_or(d.sizes),
            render: self.render.clone().unwrap_or(d.render),
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    pub url: String,
    #[serde(default = "default_branch")]
    pub branch: String,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub ssh_key_file: Option<PathBuf>,
    #[serde(default = "default_author_name")]
    pub author_name: String,
    #[serde(default = "default_author_email")]
    pub author_email: String,
    /// Where the writer keeps its clone (default: under the system's temp dir).
    #[serde(default)]
    pub workdir: Option<PathBuf>,
}

impl std::fmt::Debug for RepositoryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepositoryConfig")
            .field("url", &self.url)
            .field("branch", &self.branch)
            .field("token_env", &self.token_env)
            .field("token_file", &self.token_file)
            .field("ssh_key_file", &self.ssh_key_file)
            .finish_non_exhaustive()
    }
}

fn default_branch() -> String {
    "main".into()
}
fn default_author_name() -> String {
    "Paved".into()
}
fn default_author_email() -> String {
    "paved@localhost".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GitTiming {
    /// How often open requests are looked for.
    pub scan_ms: u64,
    /// Pushes refused as not fast-forward before the apply waits for the next scan.
    pub push_attempts: u32,
}

impl Default for GitTiming {
    fn default() -> Self {
        Self {
            scan_ms: 500,
            push_attempts: 10,
        }
    }
}
