//! A private `clickhouse-server` for one test: its own temp config, data dir and
//! free ports on 127.0.0.1, started as a child in the foreground and killed on drop.
//!
//! Installs Debian's `clickhouse-server` if it is missing (as root, `apt-get
//! install`, with `apt-get update` first if the package is unknown); otherwise it
//! fails with a message saying exactly what to install.

#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use schoolgate_classifier::config::store::ClickhouseConfig;

/// Where Debian and upstream packages put the server.
const CANDIDATES: &[&str] = &["/usr/bin/clickhouse-server", "/usr/sbin/clickhouse-server"];

pub struct ClickHouse {
    dir: tempfile::TempDir,
    binary: PathBuf,
    pub http_port: u16,
    pub tcp_port: u16,
    pub interserver_port: u16,
    child: Option<Child>,
}

impl ClickHouse {
    /// Starts a fresh server; panics with the reason (and the server's log) if it
    /// cannot.
    pub fn start() -> ClickHouse {
        let binary = server_binary();
        let mut last_error = String::new();
        // A free port can be taken between our probe and the server's bind: try
        // a few sets.
        for _ in 0..5 {
            let mut ch = ClickHouse {
                dir: tempfile::Builder::new()
                    .prefix("schoolgate-ch-")
                    .tempdir()
                    .expect("tempdir for clickhouse"),
                binary: binary.clone(),
                http_port: free_port(),
                tcp_port: free_port(),
                interserver_port: free_port(),
                child: None,
            };
            match ch.spawn() {
                Ok(()) => return ch,
                Err(e) => last_error = e,
            }
        }
        panic!("clickhouse-server would not start: {last_error}");
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.xml")
    }

    fn write_config(&self) {
        let root = self.dir.path();
        let data = root.join("data");
        fs::create_dir_all(data.join("tmp")).expect("data dir");
        fs::create_dir_all(data.join("user_files")).expect("user_files dir");
        fs::create_dir_all(data.join("format_schemas")).expect("format_schemas dir");
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <http_port>{http}</http_port>
  <tcp_port>{tcp}</tcp_port>
  <interserver_http_port>{inter}</interserver_http_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{data}/</path>
  <tmp_path>{data}/tmp/</tmp_path>
  <user_files_path>{data}/user_files/</user_files_path>
  <format_schema_path>{data}/format_schemas/</format_schema_path>
  <users_config>{root}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>67108864</mark_cache_size>
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
  <mlock_executable>false</mlock_executable>
  <timezone>UTC</timezone>
</yandex>
"#,
            http = self.http_port,
            tcp = self.tcp_port,
            inter = self.interserver_port,
            data = data.display(),
            root = root.display(),
        );
        fs::write(self.config_path(), config).expect("write config.xml");
        let users = r#"<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default></default></quotas>
</yandex>
"#;
        fs::write(root.join("users.xml"), users).expect("write users.xml");
    }

    fn spawn(&mut self) -> Result<(), String> {
        self.write_config();
        let log_path = self.dir.path().join("server.log");
        let log = File::create(&log_path).map_err(|e| format!("server log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("server log: {e}"))?;
        let child = Command::new(&self.binary)
            .arg(format!("--config-file={}", self.config_path().display()))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("running {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("exited with {status}; log:\n{log}"));
            }
            if self.ping() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        Err(format!(
            "no answer to GET /ping on port {} within 30 s",
            self.http_port
        ))
    }

    fn ping(&self) -> bool {
        http(self.http_port, "GET", "/ping", "")
            .is_ok_and(|(status, body)| status == 200 && body.starts_with("Ok."))
    }

    /// Kills the server (SIGKILL: a crash, not a clean stop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same data dir and ports.
    pub fn restart(&mut self) {
        self.stop();
        let mut last = String::new();
        // The old listening sockets can linger a moment after a SIGKILL.
        for _ in 0..20 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("clickhouse-server would not restart: {last}");
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn config(&self, database: &str) -> ClickhouseConfig {
        ClickhouseConfig {
            url: self.url(),
            database: database.to_owned(),
            ..ClickhouseConfig::default()
        }
    }

    /// Runs a statement over plain HTTP and returns the text answer; panics on an
    /// error answer (for assertions and deliberate schema breakage).
    pub fn sql(&self, statement: &str) -> String {
        match http(self.http_port, "POST", "/", statement) {
            Ok((200, body)) => body,
            Ok((status, body)) => panic!("clickhouse answered {status} to `{statement}`: {body}"),
            Err(e) => panic!("clickhouse unreachable for `{statement}`: {e}"),
        }
    }

    /// A `SELECT` of one number.
    pub fn number(&self, statement: &str) -> u64 {
        let text = self.sql(statement);
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("`{statement}` answered `{text}`, not a number"))
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// A minimal HTTP/1.0 exchange (the server closes the connection after the answer).
fn http(port: u16, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP header")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no HTTP status")?;
    Ok((status, body.to_owned()))
}

/// The server binary, installing the Debian package if it is missing.
fn server_binary() -> PathBuf {
    if let Some(found) = find_server() {
        return found;
    }
    install();
    find_server().unwrap_or_else(|| {
        panic!(
            "clickhouse-server is not installed and could not be installed. As root run: \
             apt-get update && apt-get install -y clickhouse-server clickhouse-client"
        )
    })
}

fn find_server() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("clickhouse-server"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .chain(from_path)
        .find(|p| p.is_file())
}

fn install() {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if uid != "0" {
        panic!(
            "clickhouse-server is not installed and these tests are not running as root \
             (uid {uid}), so they cannot install it. Run: \
             sudo apt-get update && sudo apt-get install -y clickhouse-server clickhouse-client"
        );
    }
    // Tests run in parallel processes: one installs, the others wait for it.
    let lock = File::create(std::env::temp_dir().join("schoolgate-clickhouse-install.lock"))
        .expect("install lock file");
    lock.lock().expect("install lock");
    if find_server().is_some() {
        return;
    }
    let apt_install = || {
        Command::new("apt-get")
            .args(["install", "-y", "clickhouse-server", "clickhouse-client"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !apt_install() {
        let updated = Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
        if !updated || !apt_install() {
            panic!(
                "`apt-get install -y clickhouse-server clickhouse-client` failed (after \
                 `apt-get update`): see the apt output above"
            );
        }
    }
}
