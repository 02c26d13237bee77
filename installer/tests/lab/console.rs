//! The web console end to end: a real Chromium (through chromedriver) against the console
//! served over HTTPS from this process, on a lab cluster of three nodes. First-run setup, sign
//! in, the overview's three Ready nodes, a backup whose log streams live and survives a reload,
//! the backup listed with its checksum, sign out. Screenshots of each page land in
//! target/console-screenshots/ (docs/screenshots/ holds a copy for the README).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::cluster::{admin_kubeconfig, assert_success, init, wait_ready};
use crate::support::{TestLab, run};

const ETCDCTL: &str = "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 \
    --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt \
    --key=/etc/kubernetes/pki/etcd/healthcheck-client.key";

const PASSWORD: &str = "correct horse battery staple";

/// chromedriver on a free loopback port, stopped with the test.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn chromedriver() -> Driver {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian's chromium-driver; scripts/prepare-test-host installs it)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    Driver(child, port)
}

async fn browser(driver: &Driver) -> Client {
    let capabilities = serde_json::json!({
        "browserName": "chrome",
        // The console's certificate is signed by its own CA, which this browser profile does
        // not know; the test trusts it the way an operator accepts it on first visit.
        "acceptInsecureCerts": true,
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000"]
        }
    });
    ClientBuilder::rustls()
        .unwrap()
        .capabilities(capabilities.as_object().unwrap().clone())
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("a Chromium session")
}

struct Screens(PathBuf);

impl Screens {
    async fn shoot(&self, client: &Client, name: &str) {
        let png = client.screenshot().await.unwrap();
        std::fs::write(self.0.join(format!("{name}.png")), png).unwrap();
    }
}

async fn fill(client: &Client, field: &str, value: &str) {
    let input = client
        .find(Locator::Css(&format!("[name={field}]")))
        .await
        .unwrap();
    input.clear().await.unwrap();
    input.send_keys(value).await.unwrap();
}

async fn submit(client: &Client, form: &str) {
    client
        .find(Locator::Css(&format!("{form} button[type=submit]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn text_of(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> String
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(found) => return found,
            Err(last) if Instant::now() > deadline => {
                panic!("{what}: not within {} s; last: {last}", timeout.as_secs())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The log lines on the page, with their sequence numbers.
async fn log_lines(client: &Client) -> Vec<(i64, String)> {
    let mut lines = Vec::new();
    for item in client.find_all(Locator::Css("#log li")).await.unwrap() {
        let seq = item
            .attr("data-seq")
            .await
            .unwrap()
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1);
        lines.push((seq, item.text().await.unwrap()));
    }
    lines
}

fn fill_etcd(lab: &TestLab, megabytes: usize) {
    // Incompressible 1 MiB values (etcd's request limit is 1.5 MiB), so the snapshot takes
    // long enough to reload the page while it streams.
    let output = lab.ssh(
        "node1",
        &format!(
            "head -c 1048576 /dev/urandom > /root/value && for i in $(seq 1 {megabytes}); do \
             {ETCDCTL} put /console-e2e/$i < /root/value >/dev/null || exit 1; done"
        ),
    );
    assert!(output.status.success(), "filling etcd: {output:?}");
}

fn serve_console(config: &Path, dir: &Path) -> (String, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = kinit_console::db::Db::open(&dir.join("console.db")).unwrap();
    let (cert, key) = kinit_console::tls::certificate(
        None,
        dir,
        &kinit_console::tls::names_for("127.0.0.1".parse().unwrap()),
    )
    .unwrap();
    let acceptor =
        tokio_rustls::TlsAcceptor::from(kinit_console::tls::server_config(&cert, &key).unwrap());
    let address = runtime.block_on(async {
        let console = kinit_console::Console::new(db, config.to_owned());
        console.watch_health(Duration::from_secs(3));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(kinit_console::server::serve(
            listener,
            acceptor,
            kinit_console::router(console),
        ));
        address
    });
    (format!("https://{address}"), runtime)
}

#[test]
fn the_console_in_chromium_on_a_three_node_lab() {
    assert!(
        kinit_console::assets::islands(),
        "the console was built without its islands: run scripts/build-console-ui first"
    );
    // fantoccini's rustls brings ring, kinit's aws-lc-rs: say which one this process uses.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let lab = TestLab::new("web");
    run(lab.kinit().args(["lab", "up", "--nodes", "3"]));
    let config = lab.inventory();
    assert_success("kinit init", &init(&lab, &config, &[]));
    wait_ready(&admin_kubeconfig(&lab, &config), 3);
    fill_etcd(&lab, 300);

    let console_dir = tempfile::tempdir().unwrap();
    let (base, runtime) = serve_console(&config, console_dir.path());
    let screens =
        Screens(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots"));
    std::fs::create_dir_all(&screens.0).unwrap();
    let driver = chromedriver();
    let backup_dir =
        kinit::ops::backup::default_dir(&kinit::config::load(&config).unwrap().state_dir());

    runtime.block_on(async {
        let client = browser(&driver).await;
        let url = |path: &str| format!("{base}{path}");

        // First visit: nobody exists yet, so the console asks for the first administrator.
        client.goto(&url("/")).await.unwrap();
        assert_eq!(client.current_url().await.unwrap().path(), "/setup");
        screens.shoot(&client, "setup").await;
        fill(&client, "name", "alice").await;
        fill(&client, "password", PASSWORD).await;
        submit(&client, "form[action='/setup']").await;
        until(
            "the overview after setup",
            Duration::from_secs(10),
            || async {
                let path = client.current_url().await.unwrap().path().to_owned();
                (path == "/").then_some(path.clone()).ok_or(path)
            },
        )
        .await;

        // Sign out and in again, as day-2 staff do.
        submit(&client, "form.logout").await;
        until("the sign-in page", Duration::from_secs(10), || async {
            let path = client.current_url().await.unwrap().path().to_owned();
            (path == "/login").then_some(path.clone()).ok_or(path)
        })
        .await;
        fill(&client, "name", "alice").await;
        fill(&client, "password", "not the password").await;
        submit(&client, "form[action='/login']").await;
        until(
            "the refusal of a wrong password",
            Duration::from_secs(10),
            || async {
                let refused = text_of(&client, "p.error").await;
                refused
                    .contains("Wrong name or password")
                    .then_some(refused.clone())
                    .ok_or(refused)
            },
        )
        .await;
        screens.shoot(&client, "login").await;
        fill(&client, "name", "alice").await;
        fill(&client, "password", PASSWORD).await;
        submit(&client, "form[action='/login']").await;

        // The overview shows the three nodes Ready, from the console's own look at the cluster.
        let nodes = until(
            "three Ready nodes on the overview",
            Duration::from_secs(120),
            || async {
                client.goto(&url("/")).await.unwrap();
                let table = text_of(&client, "#node-table").await;
                // Below the header line, one line per node.
                let ready = table
                    .lines()
                    .skip(1)
                    .filter(|l| l.contains(" Ready ") && !l.contains("NotReady"))
                    .count();
                if ready == 3 { Ok(table) } else { Err(table) }
            },
        )
        .await;
        for node in ["node1", "node2", "node3"] {
            assert!(nodes.contains(node), "{nodes}");
        }
        let etcd = text_of(&client, "#etcd-table").await;
        assert!(
            etcd.contains("healthy") && etcd.contains("leader"),
            "{etcd}"
        );
        screens.shoot(&client, "overview").await;

        // A backup: started from the Backups page, its log followed live.
        client.goto(&url("/backups")).await.unwrap();
        assert!(text_of(&client, "main").await.contains("No backups yet"));
        submit(&client, "form[action='/backups']").await;
        let operation = until(
            "the backup's operation page",
            Duration::from_secs(10),
            || async {
                let path = client.current_url().await.unwrap().path().to_owned();
                path.starts_with("/operations/")
                    .then_some(path.clone())
                    .ok_or(path)
            },
        )
        .await;
        let status = text_of(&client, "#status").await;
        assert_eq!(status, "running", "the backup should still stream 300 MiB");
        // Reload while it runs: the lines so far come back, and the page goes on following.
        tokio::time::sleep(Duration::from_millis(500)).await;
        client.refresh().await.unwrap();
        let after_reload = text_of(&client, "#status").await;
        assert_eq!(after_reload, "running", "reloaded before the backup ended");
        let early = log_lines(&client).await;
        assert!(
            early
                .iter()
                .any(|(_, l)| l.contains("taking a snapshot of etcd")),
            "{early:?}"
        );
        screens.shoot(&client, "operation-running").await;
        // Nothing reloads from here on: only the island's stream can move the status.
        let status = until("the backup to end", Duration::from_secs(180), || async {
            let status = text_of(&client, "#status").await;
            (status != "running")
                .then_some(status.clone())
                .ok_or(status)
        })
        .await;
        assert_eq!(status, "succeeded");
        assert_eq!(client.current_url().await.unwrap().path(), operation);
        let lines = log_lines(&client).await;
        let seqs: Vec<i64> = lines.iter().map(|(seq, _)| *seq).collect();
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(seqs, sorted, "each line once, in order: {lines:?}");
        assert!(
            lines.iter().any(|(_, l)| l.contains("streamed")),
            "{lines:?}"
        );
        let last = &lines.last().unwrap().1;
        let sha256 = last
            .split("sha256 ")
            .nth(1)
            .unwrap_or_else(|| panic!("the last line names the checksum: {last}"))
            .to_owned();
        screens.shoot(&client, "operation").await;

        // The backup is listed with the checksum its record holds.
        client.goto(&url("/backups")).await.unwrap();
        let listed = text_of(&client, "#backup-table").await;
        assert!(listed.contains(&sha256), "{sha256} in {listed}");
        let record = std::fs::read_dir(&backup_dir)
            .unwrap()
            .filter_map(Result::ok)
            .find_map(|e| std::fs::read_to_string(e.path().join("backup.json")).ok())
            .expect("a backup record");
        assert!(record.contains(&sha256), "{record}");
        screens.shoot(&client, "backups").await;

        // Restore it, from the browser: the button stays disabled until the cluster's name is
        // typed (the confirmation island), then the restore runs as an operation.
        client
            .find(Locator::LinkText("Restore…"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let button = client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("form.danger button[type=submit]"))
            .await
            .unwrap();
        assert!(
            !button.is_enabled().await.unwrap(),
            "disabled before the word is typed"
        );
        fill(&client, "confirm", "wrong").await;
        assert!(
            !button.is_enabled().await.unwrap(),
            "disabled for a wrong word"
        );
        fill(&client, "confirm", "web").await;
        until(
            "the restore button to be enabled",
            Duration::from_secs(10),
            || async {
                let enabled = button.is_enabled().await.unwrap();
                enabled
                    .then_some(String::new())
                    .ok_or_else(|| "disabled".to_owned())
            },
        )
        .await;
        screens.shoot(&client, "restore").await;
        button.click().await.unwrap();
        until(
            "the restore's operation page",
            Duration::from_secs(10),
            || async {
                let path = client.current_url().await.unwrap().path().to_owned();
                (path.starts_with("/operations/") && path != operation)
                    .then_some(path.clone())
                    .ok_or(path)
            },
        )
        .await;
        let restored = until("the restore to end", Duration::from_secs(600), || async {
            let status = text_of(&client, "#status").await;
            (status != "running")
                .then_some(status.clone())
                .ok_or(status)
        })
        .await;
        let log = log_lines(&client).await;
        assert_eq!(restored, "succeeded", "{log:?}");
        assert!(
            log.iter().any(|(_, l)| l.contains("restored from")),
            "{log:?}"
        );

        // A join command for a machine that joins by itself: shown, with a fresh token.
        // (The API server may still be coming back from the restore: ask again until it answers.)
        let command = until("a join command", Duration::from_secs(120), || async {
            client.goto(&url("/nodes")).await.unwrap();
            submit(&client, "form[action='/nodes/join-command']").await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let text = text_of(&client, "#join-command code").await;
            text.starts_with("kinit join ")
                .then_some(text.clone())
                .ok_or(text)
        })
        .await;
        assert!(
            command.contains("--token ")
                && command.contains("--discovery-token-ca-cert-hash sha256:"),
            "{command}"
        );

        // The other pages render on the real cluster; their pictures are for the README.
        for (path, name) in [
            ("/nodes", "nodes"),
            ("/upgrades", "upgrades"),
            ("/operations", "operations"),
            ("/audit", "audit"),
            ("/users", "users"),
        ] {
            client.goto(&url(path)).await.unwrap();
            let heading = text_of(&client, "h1").await;
            assert!(!heading.is_empty(), "{path} has a heading");
            screens.shoot(&client, name).await;
        }
        client.goto(&url("/audit")).await.unwrap();
        let audit = text_of(&client, "main").await;
        assert!(audit.contains("backup create"), "{audit}");

        // Sign out: the session ends, and pages send the browser to sign in.
        submit(&client, "form.logout").await;
        client.goto(&url("/")).await.unwrap();
        assert_eq!(client.current_url().await.unwrap().path(), "/login");
        client.close().await.unwrap();
    });
    run(lab.kinit().args(["lab", "down"]));
}
