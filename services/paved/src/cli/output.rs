//! How client verbs print: aligned tables for people, JSON for programs.

use serde::Serialize;

/// What a command answered. Tables show its sequence, events and id
/// ([`paved_proto::answer::CommandAnswer`]); JSON shows the message itself
/// (the proto3 JSON mapping).
pub trait Answer: paved_proto::answer::CommandAnswer + Serialize {}
impl<T: paved_proto::answer::CommandAnswer + Serialize> Answer for T {}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    #[default]
    Table,
    Json,
    /// One JSON document per line (for `paved audit`; elsewhere the same as json).
    Jsonl,
}

/// Prints `value` as pretty JSON (proto3 JSON mapping for API messages).
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints `value` as one line of JSON.
pub fn json_line<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// Prints rows under headers, columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints `label: value` pairs, labels aligned.
pub fn fields(pairs: &[(&str, String)]) {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in pairs {
        println!("{k:<width$}  {v}");
    }
}

/// A spinner on stderr showing how long a wait has taken and a message.
pub fn spinner() -> anyhow::Result<indicatif::ProgressBar> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(indicatif::ProgressStyle::with_template(
        "{spinner} {elapsed} {msg}",
    )?);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    Ok(bar)
}
