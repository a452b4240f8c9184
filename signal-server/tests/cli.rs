//! The binary prints its listening line and refuses bad configuration.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_shoal-signal");

struct Killer(std::process::Child);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn binary_prints_listening_line_with_the_real_port_and_answers_healthz() {
    let child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--heartbeat-ms", "1000"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killer(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("no listening line within 10 s");
    let url = line
        .trim_end()
        .strip_prefix("SHOAL_SIGNAL_LISTENING http://")
        .unwrap_or_else(|| panic!("bad line {line:?}"));
    let addr: std::net::SocketAddr = url.parse().unwrap();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);

    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(deadline - Instant::now())).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("ok"), "{resp}");
}

#[test]
fn env_var_sets_the_listen_address() {
    let child = Command::new(BIN)
        .env("SHOAL_SIGNAL_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killer(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("no listening line within 10 s");
    assert!(
        line.starts_with("SHOAL_SIGNAL_LISTENING http://127.0.0.1:"),
        "{line:?}"
    );
    assert!(!line.ends_with(":8080\n"), "{line:?}");
}

fn run_to_exit(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_groups_file_is_a_startup_error_naming_file_and_line() {
    let dir = std::env::temp_dir().join(format!("shoal-signal-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("groups.txt");
    std::fs::write(&path, "# groups\n10.0.0.0/8 campus\n300.1.2.3/8 broken\n").unwrap();
    let p = path.to_str().unwrap();
    let (ok, stdout, stderr) = run_to_exit(&["--listen", "127.0.0.1:0", "--groups", p]);
    assert!(!ok);
    assert!(!stdout.contains("SHOAL_SIGNAL_LISTENING"), "{stdout}");
    assert!(stderr.contains(p) && stderr.contains("line 3"), "{stderr}");

    let missing = dir.join("missing.txt");
    let (ok, _, stderr) = run_to_exit(&[
        "--listen",
        "127.0.0.1:0",
        "--groups",
        missing.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("missing.txt"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn timeout_not_above_heartbeat_is_a_startup_error() {
    let (ok, _, stderr) = run_to_exit(&[
        "--listen",
        "127.0.0.1:0",
        "--heartbeat-ms",
        "5000",
        "--heartbeat-timeout-ms",
        "5000",
    ]);
    assert!(!ok);
    assert!(stderr.contains("--heartbeat-timeout-ms"), "{stderr}");
}
