//! `paved plugin …`: the marketplace (publish a manifest, list, show,
//! deprecate, yank), installations (install with a grant, upgrade, rotate
//! the token, uninstall, list), webhook dead letters (list, replay), and
//! the scope table (`scopes`, local).

use std::path::PathBuf;

use paved_sdk::pb;
use serde::Deserialize;

use super::catalog::{ClientArgs, explain};
use super::output::{self, Output};

#[derive(clap::Args, Debug)]
pub struct PluginArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(clap::Subcommand, Debug)]
enum PluginCommand {
    /// Publish a version of a plugin from its manifest file (YAML: name,
    /// version, publisher, title, description, homepage, scopes,
    /// eventTypes, webhookUrl). The same version again changes nothing.
    Publish {
        /// The manifest file.
        path: PathBuf,
        /// Idempotency key (default: a fresh one); reuse it to retry safely.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// The marketplace: each plugin's latest version that is not yanked.
    List {
        /// Words to find in the name, title or description.
        #[arg(long)]
        query: Option<String>,
        /// Only this team's plugins.
        #[arg(long)]
        publisher: Option<String>,
    },
    /// A plugin's versions, newest first, with what each asks for.
    Show {
        /// The plugin's name.
        name: String,
    },
    /// Deprecate a version (still installable, shown as deprecated).
    #[command(disable_version_flag = true)]
    Deprecate {
        /// The plugin's name.
        name: String,
        /// The version.
        version: String,
        /// Why (recorded in the log).
        #[arg(long)]
        reason: String,
    },
    /// Yank a version: nothing new may pin it; installations on it keep running.
    #[command(disable_version_flag = true)]
    Yank {
        /// The plugin's name.
        name: String,
        /// The version.
        version: String,
        /// Why (recorded in the log).
        #[arg(long)]
        reason: String,
    },
    /// Install a version (admins) and print its token and webhook secret,
    /// shown this once.
    #[command(disable_version_flag = true)]
    Install {
        /// The plugin's name.
        plugin: String,
        /// The version to pin.
        #[arg(long)]
        version: String,
        /// The installation's name (default: the plugin's).
        #[arg(long = "as")]
        installation: Option<String>,
        /// A scope to grant (repeatable; `paved plugin scopes` lists them);
        /// each must be asked for by the version.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// The team the plugin acts for when it writes.
        #[arg(long)]
        team: Option<String>,
        /// Idempotency key (default: a fresh one); a retry issues a new token in place of the first.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Pin another version (admins); `--scope` gives a new grant, else the
    /// grant stays. Enables a webhook disabled by 410 Gone.
    #[command(disable_version_flag = true)]
    Upgrade {
        /// The installation.
        installation: String,
        /// The version to pin.
        #[arg(long)]
        version: String,
        /// A scope of the new grant (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// Issue a new token and webhook secret (admins); the earlier ones
    /// keep working for `--overlap` seconds.
    Rotate {
        /// The installation.
        installation: String,
        /// Seconds the earlier token and secret keep working (at most 30 days).
        #[arg(long, default_value_t = 0)]
        overlap: u32,
    },
    /// Uninstall (admins): every token stops at once.
    Uninstall {
        /// The installation.
        installation: String,
        /// Why (recorded in the log).
        #[arg(long)]
        reason: String,
    },
    /// Installations, with their grant, cursor and webhook state.
    Installations {
        /// Only installations of this plugin.
        #[arg(long)]
        plugin: Option<String>,
    },
    /// Messages a webhook plugin failed to take on their last attempt.
    DeadLetters {
        /// The installation.
        installation: String,
    },
    /// Send a dead letter again (admins).
    Replay {
        /// The installation.
        installation: String,
        /// The dead letter's sequence.
        sequence: u64,
    },
    /// Every scope and the RPCs that need it (local).
    Scopes,
}

/// A manifest file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ManifestFile {
    name: String,
    version: String,
    publisher: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    homepage: String,
    scopes: Vec<String>,
    #[serde(default)]
    event_types: Vec<String>,
    #[serde(default)]
    webhook_url: String,
}

/// A manifest file (YAML) as `paved plugin publish` sends it: the plugin's
/// name and its manifest (no request id).
pub fn read_manifest(path: &std::path::Path) -> anyhow::Result<pb::PublishPluginRequest> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let m: ManifestFile =
        serde_yaml_ng::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(pb::PublishPluginRequest {
        request_id: String::new(),
        plugin: m.name,
        manifest: Some(pb::PluginManifest {
            version: m.version,
            publisher: m.publisher,
            title: m.title,
            description: m.description,
            homepage: m.homepage,
            scopes: m.scopes,
            event_types: m.event_types,
            webhook_url: m.webhook_url,
        }),
    })
}

fn manifest_line(p: &pb::PluginVersionInfo) -> Vec<String> {
    let m = p.manifest.clone().unwrap_or_default();
    vec![
        p.plugin.clone(),
        m.version,
        p.status.clone(),
        m.publisher,
        if m.webhook_url.is_empty() {
            "subscribe".into()
        } else {
            "webhook".into()
        },
        m.scopes.join(","),
        m.title,
    ]
}

const VERSION_HEADERS: &[&str] = &[
    "PLUGIN",
    "VERSION",
    "STATUS",
    "PUBLISHER",
    "DELIVERY",
    "SCOPES",
    "TITLE",
];

pub async fn plugin(a: PluginArgs) -> anyhow::Result<()> {
    let out = a.client.output;
    if let PluginCommand::Scopes = a.command {
        return scopes(out);
    }
    let client = a.client.connect().await?;
    let mut plugins = client.plugins();
    match a.command {
        PluginCommand::Publish { path, request_id } => {
            let publish = pb::PublishPluginRequest {
                request_id: request_id.unwrap_or_default(),
                ..read_manifest(&path)?
            };
            let (name, version) = (
                publish.plugin.clone(),
                publish.manifest.clone().unwrap_or_default().version,
            );
            let r = client.publish_plugin(publish).await.map_err(explain)?;
            match out {
                Output::Table if r.events == 0 => {
                    println!("{name} {version} was published already");
                    Ok(())
                }
                Output::Table => {
                    println!("published {name} {version} (sequence {})", r.sequence);
                    Ok(())
                }
                _ => output::json(&r),
            }
        }
        PluginCommand::List { query, publisher } => {
            let r = plugins
                .list_plugins(pb::ListPluginsRequest {
                    query: query.unwrap_or_default(),
                    publisher: publisher.unwrap_or_default(),
                    min_sequence: 0,
                })
                .await
                .map_err(|s| explain(s.into()))?
                .into_inner();
            match out {
                Output::Table => {
                    let rows: Vec<Vec<String>> = r.plugins.iter().map(manifest_line).collect();
                    output::table(VERSION_HEADERS, &rows);
                    Ok(())
                }
                _ => output::json(&r),
            }
        }
        PluginCommand::Show { name } => {
            let r = plugins
                .get_plugin(pb::GetPluginRequest {
                    plugin: name,
                    min_sequence: 0,
                })
                .await
                .map_err(|s| explain(s.into()))?
                .into_inner();
            match out {
                Output::Table => {
                    let rows: Vec<Vec<String>> = r.versions.iter().map(manifest_line).collect();
                    output::table(VERSION_HEADERS, &rows);
                    if let Some(latest) = r.versions.first().and_then(|v| v.manifest.as_ref()) {
                        println!();
                        output::fields(&[
                            ("description", latest.description.clone()),
                            ("homepage", latest.homepage.clone()),
                            ("event types", latest.event_types.join(", ")),
                            ("webhook", latest.webhook_url.clone()),
                        ]);
                    }
                    Ok(())
                }
                _ => output::json(&r),
            }
        }
        PluginCommand::Deprecate {
            name,
            version,
            reason,
        } => {
            let r = client
                .deprecate_plugin_version(pb::DeprecatePluginVersionRequest {
                    plugin: name.clone(),
                    version: version.clone(),
                    reason,
                    ..Default::default()
                })
                .await
                .map_err(explain)?;
            done(out, &r, r.events, &format!("deprecated {name} {version}"))
        }
        PluginCommand::Yank {
            name,
            version,
            reason,
        } => {
            let r = client
                .yank_plugin_version(pb::YankPluginVersionRequest {
                    plugin: name.clone(),
                    version: version.clone(),
                    reason,
                    ..Default::default()
                })
                .await
                .map_err(explain)?;
            done(out, &r, r.events, &format!("yanked {name} {version}"))
        }
        PluginCommand::Install {
            plugin,
            version,
            installation,
            scopes,
            team,
            request_id,
        } => {
            let r = client
                .install_plugin(pb::InstallPluginRequest {
                    request_id: request_id.unwrap_or_default(),
                    installation: installation.unwrap_or_else(|| plugin.clone()),
                    plugin,
                    version,
                    scopes,
                    team: team.unwrap_or_default(),
                })
                .await
                .map_err(explain)?;
            match out {
                Output::Table => {
                    let i = r.installation.clone().unwrap_or_default();
                    println!(
                        "installed {} {} as {} (scopes: {})",
                        i.plugin,
                        i.version,
                        i.name,
                        i.scopes.join(", ")
                    );
                    println!("Shown only this once; give them to the plugin:");
                    println!();
                    println!("    token:          {}", r.token);
                    println!("    webhook secret: {}", r.webhook_secret);
                    Ok(())
                }
                _ => output::json(&r),
            }
        }
        PluginCommand::Upgrade {
            installation,
            version,
            scopes,
        } => {
            let r = client
                .upgrade_installation(pb::UpgradeInstallationRequest {
                    installation,
                    version,
                    scopes,
                    ..Default::default()
                })
                .await
                .map_err(explain)?;
            match out {
                Output::Table => {
                    let i = r.installation.unwrap_or_default();
                    println!(
                        "{} now pins {} {} (scopes: {})",
                        i.name,
                        i.plugin,
                        i.version,
                        i.scopes.join(", ")
                    );
                    Ok(())
                }
                _ => output::json(&r),
            }
        }
        PluginCommand::Rotate {
            installation,
            overlap,
        } => {
            let r = client
                .rotate_plugin_token(pb::RotatePluginTokenRequest {
                    installation,
                    overlap_seconds: overlap,
                    ..Default::default()
                })
                .await
                .map_err(explain)?;
            match out {
                Output::Table => {
                    println!(
                        "the earlier token and secret work until {}; shown only this once:",
                        super::task::time(r.previous_valid_until.as_ref())
                    );
                    println!();
                    println!("    token:          {}", r.token);
                    println!("    webhook secret: {}", r.webhook_secret);
                    Ok(())
                }
                _ => output::json(&r),
            }
        }
        PluginCommand::Uninstall {
            installation,
            reason,
        } => {
            let r = client
                .uninstall_plugin(pb::UninstallPluginRequest {
                    installation: installation.clone(),
                    reason,
                    ..Default::default()
                })
                .await
                .map_err(explain)?;
            done(out, &r, r.events, &format!("uninstalled {installation}"))
        }
        PluginCommand::Installations { plugin } => {
            let r = plugins
                .list_installations(pb::ListInstallationsRequest {
                    plugin: plugin.unwrap_or_default(),
                    min_sequence: 0,
                })
                .await
                .map_err(|s| explain(s.into()))?
                .into_inner();
            match out {
                Output::Table => {
                    let rows: Vec<Vec<String>> = r
                        .installations
                        .iter()
                        .map(|i| {
                            let webhook = match (i.webhook_url.is_empty(), &i.disabled_reason) {
                                (true, _) => "subscribe".to_string(),
                                (false, d) if !d.is_empty() => format!("disabled: {d}"),
                                (false, _) if i.failing_sequence > 0 => format!(
                                    "failing at {} ({} attempts)",
                                    i.failing_sequence, i.failing_attempts
                                ),
                                (false, _) => "webhook".to_string(),
                            };
                            vec![
                                i.name.clone(),
                                format!("{} {}", i.plugin, i.version),
                                i.status.clone(),
                                i.team.clone(),
                                i.cursor.to_string(),
                                webhook,
                                i.scopes.join(","),
                            ]
                        })
                        .collect();
                    output::table(
                        &[
                            "INSTALLATION",
                            "PLUGIN",
                            "STATUS",
                            "TEAM",
                            "CURSOR",
                            "DELIVERY",
                            "SCOPES",
                        ],
                        &rows,
                    );
                    Ok(())
                }
                _ => output::json(&r),
            }
        }
        PluginCommand::DeadLetters { installation } => {
            let r = plugins
                .list_dead_letters(pb::ListDeadLettersRequest {
                    installation,
                    min_sequence: 0,
                })
                .await
                .map_err(|s| explain(s.into()))?
                .into_inner();
            match out {
                Output::Table => {
                    let rows: Vec<Vec<String>> = r
                        .dead_letters
                        .iter()
                        .map(|d| {
                            vec![
                                d.sequence.to_string(),
                                d.attempts.to_string(),
                                d.status.to_string(),
                                if d.delivered {
                                    "delivered by a replay".into()
                                } else if d.replay_pending {
                                    "replay pending".into()
                                } else {
                                    "dead".into()
                                },
                                d.error.chars().take(80).collect(),
                            ]
                        })
                        .collect();
                    output::table(&["SEQUENCE", "ATTEMPTS", "STATUS", "STATE", "ERROR"], &rows);
                    Ok(())
                }
                _ => output::json(&r),
            }
        }
        PluginCommand::Replay {
            installation,
            sequence,
        } => {
            let r = client
                .replay_dead_letter(pb::ReplayDeadLetterRequest {
                    installation: installation.clone(),
                    sequence,
                    ..Default::default()
                })
                .await
                .map_err(explain)?;
            done(
                out,
                &r,
                r.events,
                &format!("{installation}: dead letter {sequence} will be sent again"),
            )
        }
        PluginCommand::Scopes => unreachable!("answered above without a server"),
    }
}

fn done<T: serde::Serialize>(out: Output, r: &T, events: u32, what: &str) -> anyhow::Result<()> {
    match out {
        Output::Table if events == 0 => {
            println!("{what}: already so, nothing changed");
            Ok(())
        }
        Output::Table => {
            println!("{what}");
            Ok(())
        }
        _ => output::json(r),
    }
}

/// The scope table: each scope and the RPCs needing it.
fn scopes(out: Output) -> anyhow::Result<()> {
    use paved_api::access::{Need, TABLE};
    let mut rows = Vec::new();
    for scope in paved_domain::Scope::all() {
        let rpcs: Vec<String> = TABLE
            .iter()
            .filter(|(_, _, n)| match n {
                Need::Scope(s) => *s == scope,
                Need::Events => matches!(scope, paved_domain::Scope::Events(_)),
                Need::Plugin => false,
            })
            .map(|(s, m, _)| format!("{s}.{m}"))
            .collect();
        rows.push((scope.to_string(), scope.grantable(), rpcs));
    }
    match out {
        Output::Table => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|(s, g, rpcs)| {
                    vec![
                        s.clone(),
                        if *g { "yes" } else { "no (people only)" }.into(),
                        rpcs.join(", "),
                    ]
                })
                .collect();
            output::table(&["SCOPE", "FOR PLUGINS", "RPCS"], &table);
            println!();
            println!(
                "A plugin's own token also calls PluginService.SubscribePluginEvents and AcknowledgePluginEvents."
            );
            Ok(())
        }
        _ => output::json(
            &rows
                .iter()
                .map(|(s, g, rpcs)| serde_json::json!({"scope": s, "grantable": g, "rpcs": rpcs}))
                .collect::<Vec<_>>(),
        ),
    }
}
