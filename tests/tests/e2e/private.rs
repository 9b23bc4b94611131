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

/// A NATS server with JetStream of this test's own (the machine's 2.9
/// binary), on its own port and store, stopped on drop.
pub struct PrivateNats {
    dir: PathBuf,
    pub port: u16,
    child: Option<std::process::Child>,
}

impl PrivateNats {
    /// Starts a server; `jetstream` goes inside its `jetstream { … }` block
    /// (e.g. `max_file_store: 1MB`).
    pub fn start(jetstream: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("paved-nats-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        std::fs::write(
            dir.join("nats.conf"),
            format!(
                "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: \"{}\"\n  {jetstream}\n}}\n",
                dir.join("js").display()
            ),
        )
        .unwrap();
        let mut n = Self {
            dir,
            port,
            child: None,
        };
        n.start_again();
        n
    }

    pub fn start_again(&mut self) {
        let child = Command::new("/usr/sbin/nats-server")
            .arg("-c")
            .arg(self.dir.join("nats.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
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
        if let Some(mut c) = self.child.take() {
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
