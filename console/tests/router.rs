//! The console's HTTP surface, request by request through the router (`oneshot`, no socket):
//! first-run setup, login, sessions and their expiry, CSRF, roles, the login rate limit, the
//! audit log and live operation logs. The cluster configuration deliberately does not exist:
//! pages must show that, and an operation started on it must fail with a clear log.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use kinit_console::db::Db;
use kinit_console::{Console, router};
use tower::ServiceExt;

struct Harness {
    console: Arc<Console>,
    app: Router,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let console = Console::new(Db::in_memory().unwrap(), dir.path().join("cluster.yaml"));
    Harness {
        app: router(console.clone()),
        console,
        _dir: dir,
    }
}

async fn body(response: Response<Body>) -> String {
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

fn set_cookie(response: &Response<Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.split(';')
                .next()
                .and_then(|pair| pair.split_once('='))
                .filter(|(k, _)| *k == name)
                .map(|(_, value)| value.to_owned())
        })
}

fn location(response: &Response<Body>) -> &str {
    response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The CSRF token a page's forms carry.
fn csrf_in(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

impl Harness {
    async fn send(&self, request: Request<Body>) -> Response<Body> {
        self.app.clone().oneshot(request).await.unwrap()
    }

    async fn get(&self, path: &str, session: Option<&str>) -> Response<Body> {
        let mut request = Request::get(path);
        if let Some(token) = session {
            request = request.header(header::COOKIE, format!("__Host-kinit-session={token}"));
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    async fn post(
        &self,
        path: &str,
        cookies: &str,
        fields: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> Response<Body> {
        let mut request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, cookies)
            .header(header::HOST, "console.test");
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let form = serde_urlencoded::to_string(fields).unwrap();
        self.send(request.body(Body::from(form)).unwrap()).await
    }

    /// Login as `name`: the session token and the CSRF token of its forms.
    async fn login(&self, name: &str, password: &str) -> Response<Body> {
        let page = self.get("/login", None).await;
        let pre = set_cookie(&page, "__Host-kinit-csrf").expect("a pre-session cookie");
        let csrf = csrf_in(&body(page).await);
        self.post(
            "/login",
            &format!("__Host-kinit-csrf={pre}"),
            &[("csrf", &csrf), ("name", name), ("password", password)],
            &[],
        )
        .await
    }

    async fn session(&self, name: &str, password: &str) -> (String, String) {
        let response = self.login(name, password).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "login as {name}");
        let token = set_cookie(&response, "__Host-kinit-session").unwrap();
        let page = self.get("/backups", Some(&token)).await;
        let csrf = csrf_in(&body(page).await);
        (token, csrf)
    }

    /// First-run setup of `admin`; their session.
    async fn setup(&self) -> (String, String) {
        let page = self.get("/setup", None).await;
        assert_eq!(page.status(), StatusCode::OK);
        let pre = set_cookie(&page, "__Host-kinit-csrf").unwrap();
        let csrf = csrf_in(&body(page).await);
        let done = self
            .post(
                "/setup",
                &format!("__Host-kinit-csrf={pre}"),
                &[
                    ("csrf", &csrf),
                    ("name", "admin"),
                    ("password", "admin password 1"),
                ],
                &[],
            )
            .await;
        assert_eq!(done.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&done), "/");
        let cookie = done
            .headers()
            .get(header::SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        for attribute in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Max-Age=",
            "Path=/",
        ] {
            assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
        }
        let token = set_cookie(&done, "__Host-kinit-session").unwrap();
        let page = self.get("/backups", Some(&token)).await;
        (token, csrf_in(&body(page).await))
    }

    async fn add_user(&self, admin: &(String, String), name: &str, role: &str) {
        let added = self
            .post(
                "/users",
                &format!("__Host-kinit-session={}", admin.0),
                &[
                    ("csrf", &admin.1),
                    ("name", name),
                    ("password", "long enough password"),
                    ("role", role),
                ],
                &[],
            )
            .await;
        assert_eq!(added.status(), StatusCode::SEE_OTHER, "adding {name}");
    }

    fn audit(&self) -> Vec<String> {
        self.console
            .db
            .audit_log(1000)
            .unwrap()
            .into_iter()
            .map(|e| format!("{} {} {} {}", e.user, e.action, e.target, e.result))
            .collect()
    }
}

#[tokio::test]
async fn first_run_setup_then_every_page_needs_a_session() {
    let h = harness();
    // Nobody exists: every page leads to setup, login too; there is no default password.
    let home = h.get("/", None).await;
    assert_eq!(home.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&home), "/setup");
    assert_eq!(location(&h.get("/login", None).await), "/setup");
    // Public: health, assets. Security headers everywhere.
    let health = h.get("/healthz", None).await;
    assert_eq!(health.status(), StatusCode::OK);
    let headers = health.headers();
    assert!(
        headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(
        h.get("/assets/console.css", None).await.status(),
        StatusCode::OK
    );

    let admin = h.setup().await;
    // Setup is over: a second one is refused, the page leads to login.
    assert_eq!(location(&h.get("/setup", None).await), "/login");
    let again = h
        .post(
            "/setup",
            "__Host-kinit-csrf=x",
            &[
                ("csrf", "x"),
                ("name", "eve"),
                ("password", "eve's password!"),
            ],
            &[],
        )
        .await;
    assert_eq!(again.status(), StatusCode::FORBIDDEN);
    assert_eq!(h.console.db.user_count().unwrap(), 1);

    // Without a session: pages redirect to login, mutations are refused.
    for path in [
        "/",
        "/backups",
        "/operations",
        "/audit",
        "/users",
        "/operations/1/events",
    ] {
        let response = h.get(path, None).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&response), "/login", "{path}");
    }
    let anonymous = h.post("/backups", "", &[("csrf", &admin.1)], &[]).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let forged_session = h.get("/", Some("not-a-session")).await;
    assert_eq!(location(&forged_session), "/login");

    // With one: the overview names the unusable configuration instead of a blank page.
    let overview = h.get("/", Some(&admin.0)).await;
    assert_eq!(overview.status(), StatusCode::OK);
    let html = body(overview).await;
    assert!(html.contains("<h1>Overview</h1>"), "{html}");
    assert!(html.contains("cannot be used"), "{html}");
    assert!(html.contains("aria-current=\"page\""), "{html}");

    // Logout ends the session for good.
    let out = h
        .post(
            "/logout",
            &format!("__Host-kinit-session={}", admin.0),
            &[("csrf", &admin.1)],
            &[],
        )
        .await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&h.get("/", Some(&admin.0)).await), "/login");
    let audit = h.audit();
    assert!(
        audit.iter().any(|e| e == "admin setup admin admin created"),
        "{audit:?}"
    );
    assert!(
        audit.iter().any(|e| e == "admin logout admin ok"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn forged_and_cross_site_posts_are_refused_and_audited() {
    let h = harness();
    let (token, csrf) = h.setup().await;
    let cookies = format!("__Host-kinit-session={token}");
    let missing = h.post("/backups", &cookies, &[], &[]).await;
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    let wrong = h
        .post("/backups", &cookies, &[("csrf", "forged")], &[])
        .await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let other_site = h
        .post(
            "/backups",
            &cookies,
            &[("csrf", &csrf)],
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(other_site.status(), StatusCode::FORBIDDEN);
    let fetch_site = h
        .post(
            "/users",
            &cookies,
            &[
                ("csrf", &csrf),
                ("name", "x"),
                ("password", "long enough password"),
                ("role", "admin"),
            ],
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(fetch_site.status(), StatusCode::FORBIDDEN);
    assert_eq!(h.console.db.user_count().unwrap(), 1, "nothing changed");
    assert!(
        h.console.db.operations(10).unwrap().is_empty(),
        "nothing started"
    );
    // The login form is protected too (double-submit cookie).
    let login = h
        .post(
            "/login",
            "__Host-kinit-csrf=aaa",
            &[
                ("csrf", "bbb"),
                ("name", "admin"),
                ("password", "admin password 1"),
            ],
            &[],
        )
        .await;
    assert_eq!(login.status(), StatusCode::FORBIDDEN);

    let audit = h.audit();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.ends_with("refused: bad CSRF token"))
            .count(),
        2,
        "{audit:?}"
    );
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.ends_with("refused: cross-site request"))
            .count(),
        2,
        "{audit:?}"
    );
    // The right token from the same site is accepted (the header form works as well).
    let accepted = h
        .post(
            "/users",
            &cookies,
            &[
                ("name", "ops"),
                ("password", "long enough password"),
                ("role", "operator"),
            ],
            &[("x-csrf-token", &csrf), ("origin", "https://console.test")],
        )
        .await;
    assert_eq!(accepted.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn roles_are_enforced_on_the_server() {
    let h = harness();
    let admin = h.setup().await;
    h.add_user(&admin, "vic", "viewer").await;
    h.add_user(&admin, "otto", "operator").await;

    let viewer = h.session("vic", "long enough password").await;
    let page = body(h.get("/backups", Some(&viewer.0)).await).await;
    assert!(
        !page.contains("Back up etcd now"),
        "a viewer is not offered the button"
    );
    let refused = h
        .post(
            "/backups",
            &format!("__Host-kinit-session={}", viewer.0),
            &[("csrf", &viewer.1)],
            &[],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(body(refused).await.contains("needs the operator role"));
    assert!(
        h.console.db.operations(10).unwrap().is_empty(),
        "no backup started"
    );
    assert_eq!(
        h.get("/audit", Some(&viewer.0)).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.get("/users", Some(&viewer.0)).await.status(),
        StatusCode::FORBIDDEN
    );

    // An operator starts one; the cluster's configuration is missing, so it fails, and says
    // why in its log, which the live stream replays and then ends.
    let operator = h.session("otto", "long enough password").await;
    let started = h
        .post(
            "/backups",
            &format!("__Host-kinit-session={}", operator.0),
            &[("csrf", &operator.1)],
            &[],
        )
        .await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let path = location(&started).to_owned();
    assert!(path.starts_with("/operations/"), "{path}");
    assert_eq!(
        h.get("/users", Some(&operator.0)).await.status(),
        StatusCode::FORBIDDEN
    );
    let events = body(h.get(&format!("{path}/events"), Some(&operator.0)).await).await;
    assert!(events.contains("failed: "), "{events}");
    assert!(events.contains("cluster.yaml"), "{events}");
    assert!(events.contains("event: end\ndata: failed"), "{events}");
    // A reconnecting stream starts after the last line it had.
    let resumed = body(
        h.get(&format!("{path}/events?after=1"), Some(&operator.0))
            .await,
    )
    .await;
    assert!(!resumed.contains("id: 1\n"), "{resumed}");
    let page = body(h.get(&path, Some(&operator.0)).await).await;
    assert!(page.contains("failed: "), "{page}");

    let audit = h.audit();
    assert!(
        audit
            .iter()
            .any(|e| e == "vic backup create  denied: needs role operator"),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|e| e.starts_with("otto backup create") && e.contains("started operation")),
        "{audit:?}"
    );
    assert!(
        audit.iter().any(|e| e == "admin user add vic ok: viewer"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn sessions_expire_when_idle_and_in_any_case() {
    let h = harness();
    let (token, _) = h.setup().await;
    h.console.clock.advance(29 * 60);
    assert_eq!(
        h.get("/", Some(&token)).await.status(),
        StatusCode::OK,
        "still fresh"
    );
    h.console.clock.advance(31 * 60);
    assert_eq!(
        location(&h.get("/", Some(&token)).await),
        "/login",
        "idle too long"
    );

    // Kept busy, a session still ends 12 hours after login.
    let (token, _) = h.session("admin", "admin password 1").await;
    for _ in 0..25 {
        h.console.clock.advance(29 * 60);
        let _ = h.get("/", Some(&token)).await;
    }
    assert_eq!(
        location(&h.get("/", Some(&token)).await),
        "/login",
        "past 12 hours"
    );
}

#[tokio::test]
async fn failed_logins_are_limited_and_audited() {
    let h = harness();
    h.setup().await;
    for _ in 0..5 {
        assert_eq!(
            h.login("admin", "wrong password!").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // The right password no longer helps until the window has passed.
    let limited = h.login("admin", "admin password 1").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().contains_key(header::RETRY_AFTER));
    assert!(body(limited).await.contains("Too many failed attempts"));
    // An unknown name gets the same answer as a wrong password.
    assert_eq!(
        h.login("nobody", "whatever it is").await.status(),
        StatusCode::UNAUTHORIZED
    );
    h.console.clock.advance(16 * 60);
    assert_eq!(
        h.login("admin", "admin password 1").await.status(),
        StatusCode::SEE_OTHER
    );

    let audit = h.audit();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.ends_with("failed: wrong name or password"))
            .count(),
        6,
        "{audit:?}"
    );
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.ends_with("refused: too many failed attempts"))
            .count(),
        1,
        "{audit:?}"
    );
    assert!(
        !audit.iter().any(|e| e.contains("password 1")),
        "no secret in the audit log"
    );
}

/// A browser speaking HTTP/2 sends no Host header: the origin check uses the URI's authority.
#[tokio::test]
async fn http2_requests_are_checked_against_the_uri_authority() {
    let h = harness();
    let admin = h.setup().await;
    let form = |role: &str| {
        serde_urlencoded::to_string([
            ("csrf", admin.1.as_str()),
            ("name", "h2"),
            ("password", "long enough password"),
            ("role", role),
        ])
        .unwrap()
    };
    let request = |origin: &str, role: &str| {
        Request::post("https://console.test:8443/users")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("__Host-kinit-session={}", admin.0))
            .header(header::ORIGIN, origin)
            .header("sec-fetch-site", "same-origin")
            .body(Body::from(form(role)))
            .unwrap()
    };
    let foreign = h.send(request("https://evil.example", "admin")).await;
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    let same = h.send(request("https://console.test:8443", "viewer")).await;
    assert_eq!(same.status(), StatusCode::SEE_OTHER);
    assert_eq!(h.console.db.user_count().unwrap(), 2);
}

const CLUSTER: &str = "\
apiVersion: kinit.io/v1alpha1
kind: Cluster
metadata:
  name: routed
kubernetesVersion: v1.20.2
ssh:
  user: root
  port: 1
hosts:
  - name: cp1
    address: 127.0.0.1
    roles: [control-plane]
";

/// Day-2 actions: a role is the server's check, not the page's; what cannot be undone needs
/// its confirmation word; a node added from the browser lands in the configuration file and
/// its join runs as an operation (here it fails: nothing listens on the hosts' SSH port).
#[tokio::test]
async fn day2_actions_need_their_role_and_their_confirmation() {
    let h = harness();
    let config = h._dir.path().join("cluster.yaml");
    std::fs::write(&config, CLUSTER).unwrap();
    let admin = h.setup().await;
    h.add_user(&admin, "vic", "viewer").await;
    let viewer = h.session("vic", "long enough password").await;
    let as_admin = format!("__Host-kinit-session={}", admin.0);
    let as_viewer = format!("__Host-kinit-session={}", viewer.0);

    // Roles: a viewer cannot change them; the only admin cannot stop being one.
    let refused = h
        .post(
            "/users/vic/role",
            &as_viewer,
            &[("csrf", &viewer.1), ("role", "admin")],
            &[],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let last_admin = h
        .post(
            "/users/admin/role",
            &as_admin,
            &[("csrf", &admin.1), ("role", "viewer")],
            &[],
        )
        .await;
    assert_eq!(last_admin.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body(last_admin).await.contains("only admin"));
    let promoted = h
        .post(
            "/users/vic/role",
            &as_admin,
            &[("csrf", &admin.1), ("role", "operator")],
            &[],
        )
        .await;
    assert_eq!(promoted.status(), StatusCode::SEE_OTHER);
    let page = body(h.get("/nodes", Some(&viewer.0)).await).await;
    assert!(page.contains("Add and join"), "vic is an operator now");

    // Confirmations: the wrong word changes nothing.
    let page = body(h.get("/nodes/cp1/remove", Some(&admin.0)).await).await;
    assert!(page.contains("Type cp1 to confirm"), "{page}");
    assert!(
        page.contains("leptos-island"),
        "the confirmation is an island"
    );
    let unconfirmed = h
        .post(
            "/nodes/cp1/remove",
            &as_admin,
            &[("csrf", &admin.1), ("confirm", "cp")],
            &[],
        )
        .await;
    assert_eq!(unconfirmed.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let restore = h
        .post(
            "/backups/some-backup/restore",
            &as_admin,
            &[("csrf", &admin.1), ("confirm", "wrong")],
            &[],
        )
        .await;
    assert_eq!(restore.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body(restore).await.contains("routed"),
        "names the word to type"
    );
    assert!(
        h.console.db.operations(10).unwrap().is_empty(),
        "nothing started"
    );

    // A bad schedule is refused with the reason; a bad address leaves the file alone.
    let schedule = h
        .post(
            "/backups/schedule",
            &as_admin,
            &[
                ("csrf", &admin.1),
                ("cron", "every day"),
                ("keep_last", "3"),
            ],
            &[],
        )
        .await;
    assert_eq!(schedule.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bad = h
        .post(
            "/nodes",
            &as_admin,
            &[
                ("csrf", &admin.1),
                ("name", "w9"),
                ("address", "no address"),
                ("role", "worker"),
            ],
            &[],
        )
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body(bad).await.contains("cluster.yaml:"), "located");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), CLUSTER);

    // Adding a node: into the file, then its join runs and fails, saying which host.
    let added = h
        .post(
            "/nodes",
            &as_admin,
            &[
                ("csrf", &admin.1),
                ("name", "w9"),
                ("address", "127.0.0.9"),
                ("role", "worker"),
            ],
            &[],
        )
        .await;
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .contains("name: \"w9\"")
    );
    let path = location(&added).to_owned();
    let events = body(h.get(&format!("{path}/events"), Some(&admin.0)).await).await;
    assert!(events.contains("w9 added to"), "{events}");
    assert!(events.contains("event: end\ndata: failed"), "{events}");
    let audit = h.audit();
    for expected in [
        "vic user role  denied: needs role admin",
        "admin user role vic ok: operator",
        "admin node remove cp1 refused: not confirmed",
        "admin backup restore some-backup refused: not confirmed",
    ] {
        assert!(
            audit.iter().any(|e| e == expected),
            "{expected} in {audit:?}"
        );
    }
    assert!(
        audit
            .iter()
            .any(|e| e.starts_with("admin node join w9 started operation")),
        "{audit:?}"
    );
}
