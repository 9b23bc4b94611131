//! What `paved catalog import FILE` sends: the file and, as Backstage does,
//! every file its `Location` entities point at (`spec.target` and
//! `spec.targets` without a scheme, relative to the file naming them),
//! followed transitively, each file once, as one multi-document YAML — so
//! the whole tree is imported (or refused) as one unit. Targets with a
//! scheme (`https://…`) are not fetched: they are listed for the caller.
//!
//! Backstage's placeholders are resolved the same way: a value that is a
//! mapping of just `$text`, `$json` or `$yaml` to a relative path (an API's
//! `spec.definition: {$text: ./openapi.yaml}`) becomes that file's text,
//! or its parsed JSON or YAML, read relative to the descriptor, at most
//! [`MAX_PLACEHOLDER_BYTES`].

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// Most files one import follows.
pub const MAX_FILES: usize = 1_000;
/// Largest file a placeholder reads (the server stores at most 512 KiB per
/// entity).
pub const MAX_PLACEHOLDER_BYTES: u64 = 512 * 1024;

/// One file's share of the gathered YAML.
#[derive(Debug, PartialEq, Eq)]
pub struct Part {
    pub path: PathBuf,
    /// Index of its first document in the whole (what `documents[i]` counts).
    pub first: usize,
    pub documents: usize,
}

#[derive(Debug, Default)]
pub struct Gathered {
    pub yaml: String,
    pub parts: Vec<Part>,
    /// Targets that were not followed (URLs).
    pub not_followed: Vec<String>,
}

impl Gathered {
    /// The file and the document within it of `documents[i]` of the whole.
    pub fn locate(&self, index: usize) -> Option<(&Path, usize)> {
        self.parts
            .iter()
            .find(|p| (p.first..p.first + p.documents).contains(&index))
            .map(|p| (p.path.as_path(), index - p.first))
    }
}

/// Reads `root` and the files its Locations name, breadth first.
pub fn gather(root: &Path) -> anyhow::Result<Gathered> {
    let mut out = Gathered::default();
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([root.to_path_buf()]);
    let mut count = 0;
    while let Some(path) = queue.pop_front() {
        let canonical = path
            .canonicalize()
            .with_context(|| format!("cannot read {}", path.display()))?;
        if !seen.insert(canonical.clone()) {
            continue;
        }
        if seen.len() > MAX_FILES {
            bail!("the Locations name more than {MAX_FILES} files");
        }
        let bytes =
            std::fs::read(&canonical).with_context(|| format!("cannot read {}", path.display()))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            anyhow::anyhow!(
                "{}: not UTF-8 (invalid byte at offset {})",
                path.display(),
                e.utf8_error().valid_up_to()
            )
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        // Each file starts a document of its own.
        let chunk = if text.trim_start().starts_with("---") || out.yaml.is_empty() {
            text.to_owned()
        } else {
            format!("---\n{text}")
        };
        let dir = canonical.parent().unwrap_or(Path::new("/")).to_path_buf();
        let mut documents = 0;
        // The file's documents again, when a placeholder was resolved in one.
        let mut resolved: Vec<serde_yaml_ng::Value> = Vec::new();
        let mut any_placeholder = false;
        let mut malformed = false;
        for de in serde_yaml_ng::Deserializer::from_str(&chunk) {
            documents += 1;
            // A malformed document is the server's to report, by its index.
            let Ok(mut doc) = serde_yaml_ng::Value::deserialize(de) else {
                malformed = true;
                break;
            };
            any_placeholder |= resolve(&mut doc, &dir, &mut out.not_followed)
                .with_context(|| format!("{}: document {}", path.display(), documents - 1))?;
            resolved.push(doc.clone());
            if doc.get("kind").and_then(|k| k.as_str()) != Some("Location") {
                continue;
            }
            let spec = doc.get("spec");
            let one = spec.and_then(|s| s.get("target")).and_then(|t| t.as_str());
            let many = spec
                .and_then(|s| s.get("targets"))
                .and_then(|t| t.as_sequence())
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str());
            for target in one.into_iter().chain(many) {
                if target.contains("://") {
                    out.not_followed.push(target.to_owned());
                } else {
                    queue.push_back(dir.join(target));
                }
            }
        }
        let chunk = if any_placeholder && !malformed {
            let mut rebuilt = String::new();
            for doc in &resolved {
                rebuilt.push_str("---\n");
                rebuilt.push_str(&serde_yaml_ng::to_string(doc)?);
            }
            rebuilt
        } else {
            chunk
        };
        if !out.yaml.is_empty() && !out.yaml.ends_with('\n') {
            out.yaml.push('\n');
        }
        out.yaml.push_str(&chunk);
        out.parts.push(Part {
            path,
            first: count,
            documents,
        });
        count += documents;
    }
    Ok(out)
}

/// Resolves the placeholders in `value` (see the module docs); whether
/// there was one. URL placeholders are left as they are and listed.
fn resolve(
    value: &mut serde_yaml_ng::Value,
    dir: &Path,
    not_followed: &mut Vec<String>,
) -> anyhow::Result<bool> {
    use serde_yaml_ng::Value;
    match value {
        Value::Mapping(map) if map.len() == 1 => {
            let (key, target) = map.iter().next().expect("one entry");
            let (Some(key), Some(target)) = (key.as_str(), target.as_str()) else {
                return resolve_all(map.values_mut(), dir, not_followed);
            };
            if !matches!(key, "$text" | "$json" | "$yaml") {
                return resolve_all(map.values_mut(), dir, not_followed);
            }
            if target.contains("://") {
                not_followed.push(format!("{key}: {target}"));
                return Ok(false);
            }
            let file = dir.join(target);
            let size = std::fs::metadata(&file)
                .with_context(|| format!("{key}: cannot read {}", file.display()))?
                .len();
            if size > MAX_PLACEHOLDER_BYTES {
                bail!(
                    "{key}: {} is {size} bytes, at most {MAX_PLACEHOLDER_BYTES}",
                    file.display()
                );
            }
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("{key}: cannot read {} as UTF-8", file.display()))?;
            *value = match key {
                "$text" => Value::String(text),
                "$json" => serde_json::from_str::<serde_json::Value>(&text)
                    .with_context(|| format!("$json: {} is not JSON", file.display()))
                    .and_then(|j| Ok(serde_yaml_ng::to_value(j)?))?,
                _ => serde_yaml_ng::from_str(&text)
                    .with_context(|| format!("$yaml: {} is not YAML", file.display()))?,
            };
            Ok(true)
        }
        Value::Mapping(map) => resolve_all(map.values_mut(), dir, not_followed),
        Value::Sequence(items) => resolve_all(items.iter_mut(), dir, not_followed),
        _ => Ok(false),
    }
}

fn resolve_all<'v>(
    values: impl Iterator<Item = &'v mut serde_yaml_ng::Value>,
    dir: &Path,
    not_followed: &mut Vec<String>,
) -> anyhow::Result<bool> {
    let mut any = false;
    for v in values {
        any |= resolve(v, dir, not_followed)?;
    }
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("paved-locations-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("org")).unwrap();
        d
    }

    const GROUP: &str = "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata:\n  name: a\nspec:\n  type: team\n  children: []\n";

    #[test]
    fn a_location_tree_is_gathered_once_per_file_relative_to_the_file_naming_it() {
        let d = dir("tree");
        std::fs::write(
            d.join("all.yaml"),
            "\u{feff}apiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata:\n  name: root\nspec:\n  targets:\n    - ./org/groups.yaml\n    - https://example.com/x.yaml\n",
        )
        .unwrap();
        // It names its sibling and, through `..`, the root again (a cycle).
        std::fs::write(
            d.join("org/groups.yaml"),
            format!("---\n{GROUP}---\napiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata:\n  name: more\nspec:\n  type: file\n  target: ../all.yaml\n"),
        )
        .unwrap();
        let g = gather(&d.join("all.yaml")).unwrap();
        assert_eq!(g.parts.len(), 2, "{:?}", g.parts);
        assert_eq!(g.not_followed, ["https://example.com/x.yaml"]);
        assert!(!g.yaml.starts_with('\u{feff}'));
        let kinds: Vec<String> = serde_yaml_ng::Deserializer::from_str(&g.yaml)
            .map(|d| {
                let v = serde_yaml_ng::Value::deserialize(d).unwrap();
                v["kind"].as_str().unwrap_or("").to_owned()
            })
            .collect();
        assert_eq!(kinds, ["Location", "Group", "Location"]);
        assert_eq!(g.locate(2).unwrap().1, 1);
        assert!(g.locate(2).unwrap().0.ends_with("org/groups.yaml"));
    }

    #[test]
    fn text_json_and_yaml_placeholders_are_read_relative_to_the_descriptor() {
        let d = dir("placeholders");
        std::fs::write(d.join("org/openapi.yaml"), "openapi: 3.0.0\npaths: {}\n").unwrap();
        std::fs::write(d.join("org/meta.json"), r#"{"tier": "gold"}"#).unwrap();
        std::fs::write(
            d.join("org/api.yaml"),
            "apiVersion: backstage.io/v1alpha1\nkind: API\nmetadata:\n  name: a\n  labels:\n    $json: ./meta.json\nspec:\n  type: openapi\n  definition:\n    $text: ./openapi.yaml\n  other:\n    $text: https://example.com/x\n",
        )
        .unwrap();
        let g = gather(&d.join("org/api.yaml")).unwrap();
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&g.yaml).unwrap();
        assert_eq!(
            doc["spec"]["definition"].as_str(),
            Some("openapi: 3.0.0\npaths: {}\n")
        );
        assert_eq!(doc["metadata"]["labels"]["tier"].as_str(), Some("gold"));
        assert_eq!(g.not_followed, ["$text: https://example.com/x"]);
        assert_eq!(g.parts[0].documents, 1);
        // A placeholder naming a file that is not there: the file and document are named.
        std::fs::write(
            d.join("org/broken.yaml"),
            "kind: API\nspec:\n  definition:\n    $text: ./missing.yaml\n",
        )
        .unwrap();
        let e = format!("{:#}", gather(&d.join("org/broken.yaml")).unwrap_err());
        assert!(
            e.contains("broken.yaml: document 0") && e.contains("missing.yaml"),
            "{e}"
        );
    }

    #[test]
    fn invalid_utf8_names_the_byte_and_a_missing_target_the_file() {
        let d = dir("bad");
        std::fs::write(d.join("bad.yaml"), b"kind: Group\nname: \xff\n").unwrap();
        let e = gather(&d.join("bad.yaml")).unwrap_err().to_string();
        assert!(e.contains("offset 18"), "{e}");
        std::fs::write(
            d.join("loc.yaml"),
            "kind: Location\nspec:\n  target: ./nowhere.yaml\n",
        )
        .unwrap();
        let e = gather(&d.join("loc.yaml")).unwrap_err().to_string();
        assert!(e.contains("nowhere.yaml"), "{e}");
    }
}
