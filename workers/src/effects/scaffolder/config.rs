//! `PAVED_TEMPLATES_CONFIG`: where `publish:git` puts new repositories, the
//! credentials it pushes with, and the runner's timing.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::effects::gitops::RepositoryConfig;

/// `PAVED_TEMPLATES_CONFIG` (every key optional):
///
/// ```yaml
/// publish:
///   # A new repository is a bare repository under this directory,
///   # <root>/<host>/<owner>/<repo>.git, created by publish:git.
///   local_root: /var/lib/paved/repositories
///   # Or: the remote of a repoUrl ({host}, {owner}, {repo}); the repository
///   # must exist and be empty (Paved calls no Git host's API).
///   remote_url: "https://{host}/{owner}/{repo}.git"
///   token_env: GIT_TOKEN          # HTTPS (or token_file); ssh_key_file for SSH
///   author_name: Paved
///   author_email: paved@example.com
///   workdir: /var/lib/paved/scaffolder   # the runner's clones
/// timing:
///   scan_ms: 500
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplatesConfig {
    #[serde(default)]
    pub publish: PublishConfig,
    #[serde(default)]
    pub timing: RunnerTiming,
}

impl TemplatesConfig {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let config: Self =
            serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if config.publish.local_root.is_some() && config.publish.remote_url.is_some() {
            return Err(format!(
                "{}: publish: give local_root or remote_url, not both",
                path.display()
            ));
        }
        Ok(config)
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishConfig {
    #[serde(default)]
    pub local_root: Option<PathBuf>,
    #[serde(default)]
    pub remote_url: Option<String>,
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
    /// Where the runner keeps its clones (default: under the system's temp dir).
    #[serde(default)]
    pub workdir: Option<PathBuf>,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            local_root: None,
            remote_url: None,
            token_env: None,
            token_file: None,
            ssh_key_file: None,
            author_name: default_author_name(),
            author_email: default_author_email(),
            workdir: None,
        }
    }
}

impl std::fmt::Debug for PublishConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishConfig")
            .field("local_root", &self.local_root)
            .field("remote_url", &self.remote_url)
            .field("token_env", &self.token_env)
            .field("token_file", &self.token_file)
            .field("ssh_key_file", &self.ssh_key_file)
            .finish_non_exhaustive()
    }
}

fn default_author_name() -> String {
    "Paved".into()
}
fn default_author_email() -> String {
    "paved@localhost".into()
}

impl PublishConfig {
    /// The root of local repositories: configured, or under the temp dir.
    fn root(&self) -> PathBuf {
        self.local_root
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("paved-repositories"))
    }

    /// The remote of a repository named `host`/`owner`/`repo` (Backstage's
    /// `repoUrl`), and whether it is a local bare repository Paved creates.
    pub fn remote(&self, host: &str, owner: &str, repo: &str) -> (String, bool) {
        match &self.remote_url {
            Some(pattern) => (
                pattern
                    .replace("{host}", host)
                    .replace("{owner}", owner)
                    .replace("{repo}", repo),
                false,
            ),
            None => (
                self.root()
                    .join(host)
                    .join(owner)
                    .join(format!("{repo}.git"))
                    .to_string_lossy()
                    .into_owned(),
                true,
            ),
        }
    }

    /// The clone settings for `url` on `branch`, in a work dir of `task`'s.
    pub fn repository(&self, url: &str, branch: &str, task: &str) -> RepositoryConfig {
        let workdir = self
            .workdir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("paved-scaffolder"))
            .join(task);
        RepositoryConfig {
            url: url.to_owned(),
            branch: branch.to_owned(),
            token_env: self.token_env.clone(),
            token_file: self.token_file.clone(),
            ssh_key_file: self.ssh_key_file.clone(),
            author_name: self.author_name.clone(),
            author_email: self.author_email.clone(),
            workdir: Some(workdir),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunnerTiming {
    /// How often running tasks are looked for.
    pub scan_ms: u64,
}

impl Default for RunnerTiming {
    fn default() -> Self {
        Self { scan_ms: 500 }
    }
}
