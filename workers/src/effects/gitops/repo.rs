//! The writer's clone of the GitOps repository, driven with the `git`
//! command's plumbing: plans read the branch's tree and blobs, commits are
//! built in an index of their own and pushed by id. No work tree is
//! checked out, so what one request costs does not grow with the
//! repository.

use std::path::PathBuf;

use paved_domain::provisioning::PlannedFile;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

use super::config::RepositoryConfig;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git {args}: {why}")]
    Failed { args: String, why: String },
    #[error("cannot run git: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("{0}")]
    Config(String),
}

/// The writer's clone of the repository, driven with the `git` command.
pub struct Repo {
    dir: PathBuf,
    branch: String,
    env: Vec<(String, String)>,
    author: (String, String),
}

impl Repo {
    /// Clones `config.url` into the work dir (or reuses the clone there).
    pub async fn open(config: &RepositoryConfig) -> Result<Self, GitError> {
        let dir = config.workdir.clone().unwrap_or_else(|| {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(config.url.as_bytes());
            let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            std::env::temp_dir().join(format!("paved-gitops-{hex}"))
        });
        let mut env = vec![
            // Never wait for a prompt: a missing credential is an error.
            ("GIT_TERMINAL_PROMPT".to_owned(), "0".to_owned()),
            ("GIT_CONFIG_NOSYSTEM".to_owned(), "1".to_owned()),
        ];
        let token = match (&config.token_env, &config.token_file) {
            (Some(var), None) => {
                Some(std::env::var(var).map_err(|_| {
                    GitError::Config(format!("repository: variable {var} is not set"))
                })?)
            }
            (None, Some(file)) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| {
                        GitError::Config(format!("repository: cannot read {}: {e}", file.display()))
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
            _ => {
                return Err(GitError::Config(
                    "repository: give at most one of token_env and token_file".into(),
                ));
            }
        };
        if let Some(token) = token {
            use base64::Engine as _;
            let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            env.extend([
                ("GIT_CONFIG_COUNT".to_owned(), "1".to_owned()),
                ("GIT_CONFIG_KEY_0".to_owned(), "http.extraHeader".to_owned()),
                (
                    "GIT_CONFIG_VALUE_0".to_owned(),
                    format!(
                        "Authorization: Basic {}",
                        encode(&format!("x-access-token:{token}"))
                    ),
                ),
            ]);
        }
        if let Some(key) = &config.ssh_key_file {
            env.push((
                "GIT_SSH_COMMAND".to_owned(),
                format!(
                    "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes",
                    shell_quote(&key.to_string_lossy())
                ),
            ));
        }
        let repo = Self {
            dir,
            branch: config.branch.clone(),
            env,
            author: (config.author_name.clone(), config.author_email.clone()),
        };
        if repo.dir.join(".git").exists() {
            // A git killed mid-write (a crash) leaves its lock behind, and
            // every later command here would fail on it. One holder of the
            // lease works in this clone at a time: what is locked now is stale.
            repo.clear_stale_locks().await?;
        } else {
            if let Some(parent) = repo.dir.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            let _ = tokio::fs::remove_dir_all(&repo.dir).await;
            let out = Command::new("git")
                .args(["clone", "--quiet", "--no-checkout", &config.url])
                .arg(&repo.dir)
                .envs(repo.env.iter().cloned())
                .output()
                .await?;
            if !out.status.success() {
                return Err(GitError::Failed {
                    args: format!("clone {}", config.url),
                    why: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                });
            }
        }
        Ok(repo)
    }

    /// Removes the `*.lock` files a killed git left in the clone.
    async fn clear_stale_locks(&self) -> Result<(), GitError> {
        let mut stack = vec![self.dir.join(".git")];
        while let Some(dir) = stack.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            while let Some(entry) = entries.next_entry().await? {
                let path = entry.path();
                let kind = entry.file_type().await?;
                if kind.is_dir() {
                    // Objects are written atomically (no locks there).
                    if path.file_name().is_none_or(|n| n != "objects") {
                        stack.push(path);
                    }
                } else if path.extension().is_some_and(|e| e == "lock") {
                    tracing::info!(lock = %path.display(), "removing a stale git lock");
                    tokio::fs::remove_file(&path).await?;
                }
            }
        }
        Ok(())
    }

    /// Runs git in the clone; its stdout.
    async fn git(&self, args: &[&str]) -> Result<String, GitError> {
        self.git_with(args, None, &[]).await
    }

    /// Runs git in the clone with `input` on stdin and `env` added; its stdout.
    async fn git_with(
        &self,
        args: &[&str],
        input: Option<&[u8]>,
        env: &[(&str, &str)],
    ) -> Result<String, GitError> {
        let out = self.git_bytes(args, input, env).await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Runs git in the clone with `input` on stdin and `env` added; its stdout as bytes.
    async fn git_bytes(
        &self,
        args: &[&str],
        input: Option<&[u8]>,
        env: &[(&str, &str)],
    ) -> Result<Vec<u8>, GitError> {
        let mut child = Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(args)
            .envs(self.env.iter().cloned())
            .envs(env.iter().copied())
            .env("GIT_AUTHOR_NAME", &self.author.0)
            .env("GIT_AUTHOR_EMAIL", &self.author.1)
            .env("GIT_COMMITTER_NAME", &self.author.0)
            .env("GIT_COMMITTER_EMAIL", &self.author.1)
            .stdin(if input.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            // Written while git reads (its output is drained below).
            let input = input.to_vec();
            tokio::spawn(async move {
                let _ = stdin.write_all(&input).await;
            });
        }
        let out = child.wait_with_output().await?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(GitError::Failed {
                args: args.join(" "),
                why: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// Fetches the remote's branches.
    pub async fn fetch(&self) -> Result<(), GitError> {
        self.git(&["fetch", "--quiet", "--prune", "origin"]).await?;
        Ok(())
    }

    /// The branch's head as last fetched (or pushed); `None` while the
    /// branch does not exist yet (an empty repository).
    pub async fn head(&self) -> Result<Option<String>, GitError> {
        self.branch_head(&self.branch).await
    }

    /// The head of the remote's `branch` as last fetched (or pushed);
    /// `None` while it does not exist.
    pub async fn branch_head(&self, branch: &str) -> Result<Option<String>, GitError> {
        let remote = format!("refs/remotes/origin/{branch}");
        Ok(self
            .git(&["rev-parse", "--verify", "--quiet", &remote])
            .await
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()))
    }

    /// The files under `dir` at commit `at`.
    pub async fn files_under(&self, at: Option<&str>, dir: &str) -> Result<Vec<String>, GitError> {
        let Some(at) = at else {
            return Ok(Vec::new());
        };
        let out = self
            .git(&["ls-tree", "-r", "-z", "--name-only", at, "--", dir])
            .await?;
        Ok(out
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Every file at commit `at`.
    pub async fn all_files(&self, at: &str) -> Result<Vec<String>, GitError> {
        let out = self
            .git(&["ls-tree", "-r", "-z", "--name-only", at])
            .await?;
        Ok(out
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// A three-way merge of one file as `git merge-file` makes it: the
    /// merged text, with conflicts marked (`<<<<<<< ours`, `=======`,
    /// `>>>>>>> theirs`), and whether there were any.
    pub async fn merge_file(
        &self,
        ours: &str,
        base: &str,
        theirs: &str,
        labels: [&str; 3],
    ) -> Result<(String, bool), GitError> {
        let tmp = self.dir.join(".git").join("paved-merge");
        tokio::fs::create_dir_all(&tmp).await?;
        let paths = [tmp.join("ours"), tmp.join("base"), tmp.join("theirs")];
        for (path, text) in paths.iter().zip([ours, base, theirs]) {
            tokio::fs::write(path, text).await?;
        }
        let out = Command::new("git")
            .args([
                "merge-file",
                "-p",
                "-L",
                labels[0],
                "-L",
                labels[1],
                "-L",
                labels[2],
            ])
            .args(&paths)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await?;
        // The exit code is the number of conflicts (negative on error).
        match out.status.code() {
            Some(code) if (0..=127).contains(&code) => {
                Ok((String::from_utf8_lossy(&out.stdout).into_owned(), code > 0))
            }
            _ => Err(GitError::Failed {
                args: "merge-file".into(),
                why: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            }),
        }
    }

    /// The contents of `paths` at commit `at` (`None`: not there), in one call.
    pub async fn read(
        &self,
        at: Option<&str>,
        paths: &[&str],
    ) -> Result<Vec<Option<String>>, GitError> {
        let Some(at) = at else {
            return Ok(vec![None; paths.len()]);
        };
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let input: String = paths.iter().map(|p| format!("{at}:{p}\n")).collect();
        let out = self
            .git_bytes(&["cat-file", "--batch"], Some(input.as_bytes()), &[])
            .await?;
        // `<oid> blob <size>\n<content>\n`, or `<name> missing\n`, per line of input.
        let mut rest = out.as_slice();
        let mut contents = Vec::with_capacity(paths.len());
        for _ in paths {
            let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
            let header = String::from_utf8_lossy(&rest[..end]).into_owned();
            rest = rest.get(end + 1..).unwrap_or_default();
            let mut fields = header.split(' ');
            let (_, kind, size) = (fields.next(), fields.next(), fields.next());
            match (kind, size.and_then(|s| s.parse::<usize>().ok())) {
                (Some("blob"), Some(size)) => {
                    let body = rest.get(..size).unwrap_or_default();
                    contents.push(Some(String::from_utf8_lossy(body).into_owned()));
                    rest = rest.get(size + 1..).unwrap_or_default();
                }
                _ => contents.push(None),
            }
        }
        Ok(contents)
    }

    /// A commit on top of `parent` (none: the branch's first) that writes
    /// and deletes `files`, built in an index of its own. Returns its id.
    pub async fn commit(
        &self,
        parent: Option<&str>,
        files: &[PlannedFile],
        message: &str,
    ) -> Result<String, GitError> {
        let index = self.dir.join(".git").join("paved-index");
        let _ = tokio::fs::remove_file(&index).await;
        // Left by a git killed while it held the index (a crash).
        let _ = tokio::fs::remove_file(self.dir.join(".git").join("paved-index.lock")).await;
        let index = index.to_string_lossy().into_owned();
        let env = [("GIT_INDEX_FILE", index.as_str())];
        if let Some(parent) = parent {
            self.git_with(&["read-tree", parent], None, &env).await?;
        }
        let written: Vec<&PlannedFile> = files.iter().filter(|f| f.content.is_some()).collect();
        let mut ids = Vec::new();
        if !written.is_empty() {
            // One blob per file, from files of our own (hash-object reads paths).
            let tmp = self.dir.join(".git").join("paved-blobs");
            let _ = tokio::fs::remove_dir_all(&tmp).await;
            tokio::fs::create_dir_all(&tmp).await?;
            let mut list = String::new();
            for (i, f) in written.iter().enumerate() {
                let path = tmp.join(i.to_string());
                tokio::fs::write(&path, f.content.as_deref().unwrap_or_default()).await?;
                list.push_str(&format!("{}\n", path.display()));
            }
            let out = self
                .git_with(
                    &["hash-object", "-w", "--no-filters", "--stdin-paths"],
                    Some(list.as_bytes()),
                    &[],
                )
                .await?;
            ids = out.lines().map(str::to_owned).collect();
            let _ = tokio::fs::remove_dir_all(&tmp).await;
        }
        let mut info = String::new();
        for (f, id) in written.iter().zip(&ids) {
            info.push_str(&format!("100644 {id}\t{}\n", f.path));
        }
        for f in files.iter().filter(|f| f.content.is_none()) {
            info.push_str(&format!("0 {}\t{}\n", "0".repeat(40), f.path));
        }
        if !info.is_empty() {
            self.git_with(
                &["update-index", "--index-info"],
                Some(info.as_bytes()),
                &env,
            )
            .await?;
        }
        let tree = self.git_with(&["write-tree"], None, &env).await?;
        let mut args = vec!["commit-tree", tree.trim()];
        if let Some(parent) = parent {
            args.extend(["-p", parent]);
        }
        let sha = self.git_with(&args, Some(message.as_bytes()), &[]).await?;
        Ok(sha.trim().to_owned())
    }

    /// The commit from after `base` (from the start when `base` is empty)
    /// up to the branch's `head` whose `Paved-Request` trailer is exactly `request` and whose
    /// `Paved-Plan` trailer is exactly `plan`. Both: another installation
    /// of Paved writing the same repository numbers its requests the same.
    pub async fn find_trailer(
        &self,
        base: &str,
        head: Option<&str>,
        request: &str,
        plan: &str,
    ) -> Result<Option<String>, GitError> {
        let Some(head) = head else {
            return Ok(None);
        };
        let range = if base.is_empty() {
            head.to_owned()
        } else {
            format!("{base}..{head}")
        };
        let format = format!(
            "--format=%H%x00%(trailers:key={},valueonly,separator=%x01)%x00%(trailers:key={},valueonly,separator=%x01)%x02",
            super::REQUEST_TRAILER,
            super::PLAN_TRAILER
        );
        let out = self.git(&["log", &format, &range]).await?;
        let has = |values: &str, wanted: &str| values.split('\u{1}').any(|v| v.trim() == wanted);
        Ok(out.split('\u{2}').find_map(|entry| {
            let mut parts = entry.trim_start_matches('\n').split('\0');
            let sha = parts.next()?;
            let requests = parts.next()?;
            let plans = parts.next()?;
            (has(requests, request) && has(plans, plan)).then(|| sha.trim().to_owned())
        }))
    }

    /// Did the commits from `from` to `to` change any of `paths`?
    pub async fn touched(&self, from: &str, to: &str, paths: &[&str]) -> Result<bool, GitError> {
        let mut args = vec!["diff", "--name-only", from, to, "--"];
        args.extend(paths);
        Ok(!self.git(&args).await?.trim().is_empty())
    }

    /// Pushes commit `sha` onto the remote branch; `Ok(false)` when the
    /// remote moved on (not a fast-forward). Never forces.
    pub async fn push(&self, sha: &str) -> Result<bool, GitError> {
        self.push_branch(sha, &self.branch).await
    }

    /// Pushes commit `sha` onto the remote's `branch` (created if missing);
    /// `Ok(false)` when it moved on (not a fast-forward). Never forces.
    pub async fn push_branch(&self, sha: &str, branch: &str) -> Result<bool, GitError> {
        let refspec = format!("{sha}:refs/heads/{branch}");
        match self
            .git(&["push", "--quiet", "--porcelain", "origin", &refspec])
            .await
        {
            Ok(_) => {
                // Where the branch is now, for the next plan without a fetch.
                let tracking = format!("refs/remotes/origin/{branch}");
                self.git(&["update-ref", &tracking, sha]).await?;
                Ok(true)
            }
            Err(GitError::Failed { why, .. })
                if why.contains("non-fast-forward")
                    || why.contains("fetch first")
                    || why.contains("[rejected]")
                    || why.contains("stale info")
                    || why.contains("cannot lock ref") =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &std::path::Path, args: &[&str]) {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[tokio::test]
    async fn a_git_killed_mid_write_leaves_no_lock_that_stops_the_next_holder() {
        let dir = std::env::temp_dir().join(format!("paved-repo-{}", uuid_like()));
        std::fs::create_dir_all(&dir).unwrap();
        git(
            &dir,
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                "remote.git",
            ],
        );
        let config = RepositoryConfig {
            url: dir.join("remote.git").to_string_lossy().into_owned(),
            branch: "main".into(),
            token_env: None,
            token_file: None,
            ssh_key_file: None,
            author_name: "Paved".into(),
            author_email: "paved@localhost".into(),
            workdir: Some(dir.join("clone")),
        };
        let repo = Repo::open(&config).await.unwrap();
        let file = |c: &str| PlannedFile {
            path: "a.yaml".into(),
            content: Some(c.into()),
        };
        let first = repo.commit(None, &[file("1\n")], "first\n").await.unwrap();
        assert!(repo.push(&first).await.unwrap());
        // What a crash in the middle of `update-index` or `fetch` leaves.
        let git_dir = dir.join("clone").join(".git");
        std::fs::write(git_dir.join("paved-index.lock"), "").unwrap();
        std::fs::write(git_dir.join("refs/remotes/origin/main.lock"), "").unwrap();
        // The next holder opens the clone and carries on.
        let repo = Repo::open(&config).await.unwrap();
        repo.fetch().await.unwrap();
        let second = repo
            .commit(Some(&first), &[file("2\n")], "second\n")
            .await
            .unwrap();
        assert!(repo.push(&second).await.unwrap());
        assert_eq!(repo.head().await.unwrap().as_deref(), Some(second.as_str()));
        assert!(!git_dir.join("paved-index.lock").exists());
        std::fs::remove_dir_all(&dir).ok();
    }

    fn uuid_like() -> String {
        use std::time::{SystemTime, UNIX_EPOCH};
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        format!("{}-{}", t.as_nanos(), std::process::id())
    }
}
