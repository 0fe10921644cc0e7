//! The daemon against real stores: a seeded, encrypted SQLite metastore synced to Airflow's
//! local-filesystem files on a schedule, observed over HTTP; the binary's JSON logs, SIGHUP
//! reload and SIGTERM shutdown; two daemon processes sharing one state database (SQLite file
//! locks, PostgreSQL advisory locks) never running a job at once.
//!
//! These run in real time with 1-second schedules and poll for what they wait on; the schedule
//! logic itself is tested in virtual time (src/daemon/mod.rs).

mod support;
#[path = "support/tcp_proxy.rs"]
mod tcp_proxy;
#[path = "support/vault_server.rs"]
mod vault_server;

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airflow_secrets_sync::airflow::fernet::AirflowFernet;
use airflow_secrets_sync::daemon::{self, Options, schedule::SystemClock};
use airflow_secrets_sync::demo;
use airflow_secrets_sync::secret::SecretValue;

const BIN: &str = env!("CARGO_BIN_EXE_airflow-secrets-sync");
/// Plaintext the demo metastore holds: no output of the daemon may contain them.
const CANARIES: [&str; 3] = ["xoxb-demo-not-a-real-token", "p@ss:w/rd#?%&= +", "api-secret"];

/// A demo metastore in `dir` and the config text for it (without daemon settings).
async fn seeded(dir: &Path) -> (String, SecretValue) {
    let key = demo::seed_metastore(&dir.join("airflow.db")).await.unwrap();
    (demo::demo_config(dir, &key), key)
}

/// Add an encrypted variable to the demo metastore, as Airflow writes one.
async fn add_variable(dir: &Path, key: &SecretValue, name: &str, value: &str) {
    let fernet = AirflowFernet::from_key_string(key).unwrap();
    let token = fernet.encrypt(&SecretValue::from(value)).unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("airflow.db").display())).await.unwrap();
    sqlx::query(r#"INSERT INTO variable ("key", val, is_encrypted) VALUES (?, ?, 1)"#)
        .bind(name)
        .bind(token)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// A variable whose token does not decrypt: the run reports the item, never a value.
async fn add_corrupt_variable(dir: &Path, name: &str) {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("airflow.db").display())).await.unwrap();
    sqlx::query(r#"INSERT INTO variable ("key", val, is_encrypted) VALUES (?, 'gAAAAABnot-a-token', 1)"#)
        .bind(name)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// GET `path` from `addr`: (status code, body). A plain HTTP/1.1 client, enough for our endpoints.
fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, body.to_string())
}

/// GET `path` with an `Authorization` header: (status code, body).
fn get_auth(addr: std::net::SocketAddr, path: &str, authorization: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, body.to_string())
}

/// Poll `f` every 50 ms until it returns Some, for at most `secs` seconds.
fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status_json(addr: std::net::SocketAddr) -> serde_json::Value {
    let (code, body) = get(addr, "/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn last_result(status: &serde_json::Value, job: &str) -> Option<String> {
    status["jobs"].as_array()?.iter().find(|j| j["name"] == job)?["last_run"]["result"].as_str().map(String::from)
}

fn assert_no_canary(what: &str, text: &str) {
    for c in CANARIES {
        assert!(!text.contains(c), "{what} contains a secret value");
    }
}

/// Start the daemon in this process on `path`: its HTTP address, the stop switch, the task.
async fn start_in_process(
    path: PathBuf,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let opts = Options {
        clock: Arc::new(SystemClock),
        shutdown: async move {
            let _ = stop_rx.await;
            drop(reload_tx);
        },
        reload: reload_rx,
        on_listen: Some(addr_tx),
    };
    let handle = tokio::spawn(async move { daemon::run(&path, opts).await });
    let addr = addr_rx.await.unwrap().expect("listening");
    (addr, stop_tx, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_keeps_local_files_in_step_and_is_observable() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, key) = seeded(dir.path()).await;
    config.push_str("\n[daemon]\nlisten = \"127.0.0.1:0\"\n\n[[jobs]]\nname = \"files\"\nschedule = \"* * * * * *\"\nmode = \"apply\"\n");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &config).unwrap();

    let (addr, stop_tx, handle) = start_in_process(path.clone()).await;

    let vars = dir.path().join("variables.json");
    let d = dir.path().to_path_buf();
    let key2 = key.clone();
    tokio::task::spawn_blocking(move || {
        assert_eq!(get(addr, "/healthz"), (200, "ok\n".to_string()));
        // The first run applies the metastore to the files.
        wait_for(30, "a successful run", || (last_result(&status_json(addr), "files").as_deref() == Some("success")).then_some(()));
        let text = std::fs::read_to_string(&vars).unwrap();
        assert!(text.contains("slack_webhook_token"), "{text}");

        // A variable set in Airflow appears in the target on a later run.
        tokio::runtime::Handle::current().block_on(add_variable(&d, &key2, "added_later", "value-added-later"));
        wait_for(30, "the new variable in the target", || {
            std::fs::read_to_string(&vars).ok().filter(|t| t.contains("added_later")).map(drop)
        });

        // The file is replaced before that run records its counts: wait for the run to finish.
        wait_for(30, "the run that wrote it to finish", || {
            get(addr, "/metrics").1.contains("airflow_secrets_sync_items_total{job=\"files\",action=\"unchanged\"}").then_some(())
        });
        let status = status_json(addr);
        let job = &status["jobs"][0];
        assert_eq!(job["mode"], "apply");
        assert_eq!(job["schedule"], "* * * * * *");
        assert_eq!(job["timezone"], "UTC");
        assert!(job["next_run"].is_string(), "{job}");

        let (code, metrics) = get(addr, "/metrics");
        assert_eq!(code, 200);
        for expected in [
            "airflow_secrets_sync_runs_total{job=\"files\",result=\"success\"}",
            "airflow_secrets_sync_items_total{job=\"files\",action=\"create\"}",
            "airflow_secrets_sync_items_total{job=\"files\",action=\"unchanged\"}",
            "airflow_secrets_sync_drift_items{job=\"files\"} 0",
            "airflow_secrets_sync_last_success_timestamp_seconds{job=\"files\"}",
            "airflow_secrets_sync_run_duration_seconds_bucket{le=\"1.0\",job=\"files\"}",
            "airflow_secrets_sync_backend_calls_total{store=\"local-files(",
            "airflow_secrets_sync_job_running{job=\"files\"}",
        ] {
            assert!(metrics.contains(expected), "missing {expected} in\n{metrics}");
        }

        let (code, ready) = get(addr, "/readyz");
        assert_eq!(code, 200, "{ready}");
        let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
        assert_eq!(ready["ready"], true);
        let names: Vec<&str> = ready["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["config", "state", "store source", "store target"]);

        for (what, text) in [("/status", status.to_string()), ("/metrics", metrics)] {
            assert_no_canary(what, &text);
            assert!(!text.contains("value-added-later"), "{what} shows a value");
        }
    })
    .await
    .unwrap();

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), handle).await.expect("stops").unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_an_unreachable_target() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = seeded(dir.path()).await;
    // A Vault nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = format!(
        "{config}\n[stores.vault]\nkind = \"vault\"\nurl = \"http://{closed}\"\nauth = {{ type = \"token\", token = \"t\" }}\n\n\
         [daemon]\nlisten = \"127.0.0.1:0\"\nreadyz_timeout_secs = 3\n\n\
         [[jobs]]\nname = \"to-vault\"\ntarget = \"vault\"\nschedule = \"0 0 1 1 *\"\n"
    );
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &config).unwrap();
    let (addr, stop_tx, handle) = start_in_process(path).await;
    let (code, body) = tokio::task::spawn_blocking(move || get(addr, "/readyz")).await.unwrap();
    assert_eq!(code, 503, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], false);
    let checks = ready["checks"].as_array().unwrap();
    let vault = checks.iter().find(|c| c["name"] == "store vault").expect("the vault store is checked");
    assert_eq!(vault["ok"], false);
    assert!(vault["error"].as_str().unwrap().contains(&closed.to_string()), "{vault}");
    let source = checks.iter().find(|c| c["name"] == "store source").unwrap();
    assert_eq!(source["ok"], true, "the metastore is reachable: {source}");
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap().unwrap();
}

/// Issue 16 item 14: `/readyz` asks the backends once per `readyz_cache_secs`, however many
/// probes arrive (concurrent ones share the evaluation): a proxy in front of bao counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_cached_and_shared_by_concurrent_probes() {
    let bao = vault_server::VaultServer::start();
    let port: u16 = bao.url().rsplit(':').next().unwrap().parse().unwrap();
    let proxy = tcp_proxy::TcpProxy::start(port, usize::MAX);
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = seeded(dir.path()).await;
    let config = format!(
        "{config}\n[stores.vault]\nkind = \"vault\"\nurl = \"{}\"\nauth = {{ type = \"token\", token = \"{}\" }}\n\n\
         [daemon]\nlisten = \"127.0.0.1:0\"\nreadyz_cache_secs = 600\n\n\
         [[jobs]]\nname = \"to-vault\"\ntarget = \"vault\"\nschedule = \"0 0 1 1 *\"\n",
        proxy.url(),
        vault_server::ROOT_TOKEN
    );
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &config).unwrap();
    let (addr, stop_tx, handle) = start_in_process(path).await;
    let first = tokio::task::spawn_blocking(move || get(addr, "/readyz")).await.unwrap();
    assert_eq!(first.0, 200, "{}", first.1);
    let after_one = proxy.requests();
    assert!(after_one > 0, "the first probe asks Vault");
    let probes: Vec<_> = (0..20).map(|_| tokio::task::spawn_blocking(move || get(addr, "/readyz"))).collect();
    for p in probes {
        let (code, body) = p.await.unwrap();
        assert_eq!((code, &body), (200, &first.1), "a cached probe answers as the first did");
    }
    assert_eq!(proxy.requests(), after_one, "20 more probes within readyz_cache_secs reached Vault");
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap().unwrap();
}

/// Issue 16 item 14: with `[daemon] http_token`, `/status` and `/metrics` need the bearer token;
/// `/healthz` and `/readyz` stay open for probes; a refusal never echoes the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_metrics_require_the_bearer_token() {
    const TOKEN: &str = "http-token-canary-3c9e";
    let dir = tempfile::tempdir().unwrap();
    let (mut config, _) = seeded(dir.path()).await;
    config.push_str(&format!(
        "\n[daemon]\nlisten = \"127.0.0.1:0\"\nhttp_token = \"{TOKEN}\"\n\n[[jobs]]\nname = \"files\"\nschedule = \"0 0 1 1 *\"\n"
    ));
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &config).unwrap();
    let (addr, stop_tx, handle) = start_in_process(path).await;
    tokio::task::spawn_blocking(move || {
        for endpoint in ["/status", "/metrics"] {
            for auth in ["", "Bearer wrong", &format!("Basic {TOKEN}"), &format!("Bearer {TOKEN}x")] {
                let (code, body) = if auth.is_empty() { get(addr, endpoint) } else { get_auth(addr, endpoint, auth) };
                assert_eq!(code, 401, "{endpoint} with {auth:?}: {body}");
                assert!(!body.contains(TOKEN), "{body}");
            }
            let (code, body) = get_auth(addr, endpoint, &format!("Bearer {TOKEN}"));
            assert_eq!(code, 200, "{endpoint}: {body}");
            assert!(!body.contains(TOKEN), "{endpoint} shows the token");
        }
        assert_eq!(get(addr, "/healthz").0, 200);
        assert_eq!(get(addr, "/readyz").0, 200);
    })
    .await
    .unwrap();
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap().unwrap();
}

/// A daemon process whose stderr (JSON lines) is collected as it comes.
struct DaemonProc {
    child: Child,
    lines: Arc<Mutex<Vec<serde_json::Value>>>,
    raw: Arc<Mutex<String>>,
}

impl DaemonProc {
    fn start(config: &Path, envs: &[(&str, &str)]) -> DaemonProc {
        let mut cmd = Command::new(BIN);
        cmd.arg("daemon").arg("--config").arg(config).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        cmd.env_remove("RUST_LOG");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(String::new()));
        let (l, r) = (lines.clone(), raw.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                r.lock().unwrap().push_str(&line);
                r.lock().unwrap().push('\n');
                let v: serde_json::Value =
                    serde_json::from_str(&line).unwrap_or_else(|_| panic!("daemon log line is not JSON: {line}"));
                l.lock().unwrap().push(v);
            }
        });
        DaemonProc { child, lines, raw }
    }

    /// Log events whose message is `message`.
    fn events(&self, message: &str) -> Vec<serde_json::Value> {
        self.lines.lock().unwrap().iter().filter(|v| v["fields"]["message"] == message).cloned().collect()
    }

    fn wait_event(&self, message: &str, secs: u64) -> serde_json::Value {
        wait_for(secs, message, || self.events(message).into_iter().next())
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success());
    }

    fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let child = &mut self.child;
        wait_for(secs, "the daemon to exit", || child.try_wait().unwrap())
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_logs_json_reloads_on_sighup_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = seeded(dir.path()).await;
    add_corrupt_variable(dir.path(), "broken_var").await;
    let path = dir.path().join("config.toml");
    let first = format!(
        "{base}\n[daemon]\nlisten = \"127.0.0.1:0\"\n\n[[jobs]]\nname = \"drift\"\nschedule = \"* * * * * *\"\nmode = \"plan\"\n"
    );
    std::fs::write(&path, &first).unwrap();
    let mut d = DaemonProc::start(&path, &[]);
    let serving = d.wait_event("serving /healthz /readyz /metrics /status", 30);
    let addr: std::net::SocketAddr = serving["fields"]["address"].as_str().unwrap().parse().unwrap();

    // One event per run, with counts; one per item that cannot be migrated, naming it.
    let run = d.wait_event("job run finished", 30);
    assert_eq!(run["fields"]["job"], "drift");
    assert_eq!(run["fields"]["result"], "failure", "a corrupt token makes the run a failure: {run}");
    assert_eq!(run["fields"]["exit_code"], 6, "{run}");
    assert!(run["fields"]["create"].as_u64().unwrap() >= 9, "{run}");
    let item = d.wait_event("item cannot be migrated", 5);
    assert!(item["fields"]["item"].as_str().unwrap().contains("broken_var"), "{item}");
    assert_eq!(item["level"], "WARN");

    // A bad config is rejected and the running one stays.
    std::fs::write(&path, "this is not toml [").unwrap();
    d.signal("HUP");
    d.wait_event("configuration reload rejected; the running configuration stays", 30);
    let status = tokio::task::spawn_blocking(move || status_json(addr)).await.unwrap();
    assert_eq!(status["generation"], 1);
    assert_eq!(status["last_reload"]["result"], "rejected", "{status}");
    assert!(status["last_reload"]["error"].as_str().unwrap().contains("invalid configuration"), "{status}");
    let runs_before = d.events("job run finished").len();
    wait_for(30, "runs to go on after a rejected reload", || (d.events("job run finished").len() > runs_before).then_some(()));

    // A good config is taken: a second job appears.
    let second = format!("{first}\n[[jobs]]\nname = \"second\"\nschedule = \"0 0 1 1 *\"\n");
    std::fs::write(&path, second).unwrap();
    d.signal("HUP");
    d.wait_event("configuration reloaded; restarting jobs after in-flight runs finish", 30);
    let status = tokio::task::spawn_blocking(move || {
        wait_for(30, "generation 2", || Some(status_json(addr)).filter(|s| s["generation"] == 2))
    })
    .await
    .unwrap();
    let names: Vec<&str> = status["jobs"].as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["drift", "second"]);
    let (_, metrics) = tokio::task::spawn_blocking(move || get(addr, "/metrics")).await.unwrap();
    assert!(metrics.contains("airflow_secrets_sync_config_reloads_total{result=\"rejected\"} 1"), "{metrics}");
    assert!(metrics.contains("airflow_secrets_sync_config_reloads_total{result=\"ok\"} 1"), "{metrics}");
    assert!(metrics.contains("airflow_secrets_sync_runs_total{job=\"drift\",result=\"failure\"}"), "{metrics}");

    d.signal("TERM");
    let exit = d.wait_exit(60);
    assert!(exit.success(), "SIGTERM exits 0: {exit:?}");
    d.wait_event("daemon stopped", 5);
    assert_no_canary("the daemon's logs", &d.raw.lock().unwrap());
}

/// Two daemons with the same job and one state database: every second both want to run it; the
/// lock lets one run and the other count a skip. Their runs never overlap in time.
async fn two_daemons_take_turns(state: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = seeded(dir.path()).await;
    // Replace the demo's [state] path with the state under test (same key).
    let base = match state {
        "sqlite" => base,
        url => base.replace(
            &format!("path = \"{}\"", dir.path().join("state.db").display()),
            &format!("url = \"{url}\""),
        ),
    };
    let config = format!("{base}\n[daemon]\nlisten = \"\"\n\n[[jobs]]\nname = \"shared\"\nschedule = \"* * * * * *\"\nmode = \"apply\"\n");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &config).unwrap();

    // Both at once, on a state database neither has created yet: they also race to create and
    // migrate it (serialised by a lock beside a SQLite file, by sqlx's advisory lock on PostgreSQL).
    let mut a = DaemonProc::start(&path, &[]);
    let mut b = DaemonProc::start(&path, &[]);
    a.wait_event("starting jobs", 30);
    b.wait_event("starting jobs", 30);
    wait_for(60, "a skipped run (both daemons contending for the job)", || {
        let skips = a.events("job run skipped: another replica is running it").len()
            + b.events("job run skipped: another replica is running it").len();
        let runs = a.events("job run finished").len() + b.events("job run finished").len();
        (skips >= 2 && runs >= 3).then_some(())
    });
    a.signal("TERM");
    b.signal("TERM");
    assert!(a.wait_exit(60).success());
    assert!(b.wait_exit(60).success());

    let mut intervals: Vec<(String, String, &str)> = Vec::new();
    let (ra, rb) = (a.events("job run finished"), b.events("job run finished"));
    for (who, runs) in [("a", &ra), ("b", &rb)] {
        for r in runs.iter() {
            assert_ne!(r["fields"]["result"], "failure", "{r}");
            intervals.push((
                r["fields"]["started_at"].as_str().unwrap().to_string(),
                r["fields"]["finished_at"].as_str().unwrap().to_string(),
                who,
            ));
        }
    }
    intervals.sort();
    for w in intervals.windows(2) {
        assert!(w[1].0 >= w[0].1, "runs overlap: {:?} and {:?}", w[0], w[1]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_never_run_a_job_at_once_sqlite_state() {
    two_daemons_take_turns("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_never_run_a_job_at_once_postgres_state() {
    let db = support::fresh_postgres().await;
    two_daemons_take_turns(&db.url).await;
}

fn cli(args: &[&str], config: &Path, envs: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.args(args).arg("--config").arg(config).env_remove("AIRFLOW_SECRETS_SYNC_SNAPSHOT_KEY");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[tokio::test]
async fn daemon_check_and_once() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = seeded(dir.path()).await;
    let path: PathBuf = dir.path().join("config.toml");
    let job = "\n[[jobs]]\nname = \"nightly\"\nschedule = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"\nmode = \"apply\"\n";
    std::fs::write(&path, format!("{base}{job}")).unwrap();
    let out = cli(&["daemon", "--check"], &path, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("job nightly: Apply source -> target, 30 2 * * *"), "{stdout}");
    assert!(stdout.contains("Europe/Berlin"), "{stdout}");

    // `--once` runs every job now and exits with the worst outcome.
    let out = cli(&["daemon", "--once"], &path, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(dir.path().join("variables.json")).unwrap().contains("etl_config"));

    // An apply job without a snapshot key is refused before anything runs.
    let no_key = base.lines().filter(|l| !l.starts_with("snapshot_key")).collect::<Vec<_>>().join("\n");
    std::fs::write(&path, format!("{no_key}\n{job}")).unwrap();
    let out = cli(&["daemon", "--check"], &path, &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("need a snapshot key"), "{}", String::from_utf8_lossy(&out.stderr));

    // Each config mistake names the job and what is wrong, in one line.
    for (bad, says) in [
        ("schedule = \"every day\"", "job nightly: schedule \"every day\" is not a crontab line"),
        ("schedule = \"0 2 * * *\"\ntimezone = \"Europe/Nowhere\"", "unknown time zone"),
        ("schedule = \"0 2 * * *\"\ntarget = \"nope\"", "job nightly: no store named \"nope\""),
    ] {
        std::fs::write(&path, format!("{base}\n[[jobs]]\nname = \"nightly\"\n{bad}\n")).unwrap();
        let out = cli(&["daemon", "--check"], &path, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert!(err.contains(says), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

/// SIGTERM while an apply to a real Vault is mid-way, with no grace: the daemon cuts the run off
/// and exits 0; the journal lets the next apply resume the same run (its snapshot kept) and
/// finish, with every item in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_apply_exits_0_and_the_run_resumes() {
    const ITEMS: usize = 1500;
    let vault = vault_server::VaultServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = support::seed_variables(&d.join("airflow.db"), ITEMS, "var_", 1).await;
    let config = format!(
        "[source]\nkind = \"metastore\"\nsql_alchemy_conn = {}\nfernet_key = {}\n\n\
         [target]\nkind = \"vault\"\nurl = \"{}\"\nauth = {{ type = \"token\", token = \"{}\" }}\n\n\
         [state]\npath = \"state.db\"\nsnapshot_key = \"{}\"\n\n\
         [daemon]\nlisten = \"\"\nshutdown_grace_secs = 0\n\n\
         [[jobs]]\nname = \"to-vault\"\nschedule = \"0 0 1 1 *\"\nmode = \"apply\"\nrun_on_start = true\n",
        toml::Value::String(format!("sqlite:///{}", d.join("airflow.db").display())),
        toml::Value::String(key.expose_plaintext().into()),
        vault.url(),
        vault_server::ROOT_TOKEN,
        demo::generate_fernet_key().expose_plaintext(),
    );
    let path = d.join("config.toml");
    std::fs::write(&path, &config).unwrap();

    let count = || {
        let (code, body) = vault.root("LIST", "/v1/secret/metadata/variables", None);
        if code == 404 { 0 } else { body["data"]["keys"].as_array().map_or(0, Vec::len) }
    };
    let mut daemon = DaemonProc::start(&path, &[]);
    wait_for(60, "the apply to be under way", || (count() >= 20).then_some(()));
    daemon.signal("TERM");
    let exit = daemon.wait_exit(60);
    assert!(exit.success(), "exit 0 after a cut-off run: {exit:?}\n{}", daemon.raw.lock().unwrap());
    daemon.wait_event("in-flight runs did not finish within the grace period; cut off (their journals resume them next time)", 5);
    let written = count();
    assert!(written < ITEMS, "the run finished before SIGTERM ({written} items): the test proves nothing");

    let o = Command::new(BIN).args(["migrate", "--apply"]).current_dir(d).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.lines().any(|l| l.starts_with("Run ") && l.contains("(resumed)")), "{out}");
    assert_eq!(count(), ITEMS);
    let o = Command::new(BIN).args(["migrate", "--plan"]).current_dir(d).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
}
