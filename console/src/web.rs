//! The HTTP front: routes, the session and CSRF gate every route but login, setup, assets and
//! the health check goes through, security headers, and the handlers. Handlers only call the
//! operations library (`kinit::ops`) and the console's database.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{AppendHeaders, Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use futures::Stream;
use leptos::prelude::RenderHtml;
use serde::Deserialize;

use crate::auth::{self, PRE_SESSION_COOKIE, SESSION_COOKIE};
use crate::cluster::{Configuration, Health};
use crate::day2;
use crate::db::{Db, Role, Session};
use crate::operations::{Clock, Log, Operations, StartError};
use crate::pages::{self, Chrome};

/// Everything a request can reach.
pub struct Console {
    pub db: Arc<Db>,
    pub clock: Clock,
    pub operations: Arc<Operations>,
    /// The cluster configuration the console works on; a broken file is shown as an error
    /// instead of stopping the console.
    pub configuration: Arc<Configuration>,
    pub health: Arc<Health>,
    /// Seals the backups the console takes, and opens them for a restore.
    pub backup_key_file: Option<PathBuf>,
    /// Certificate expiry, read from the state directory's PKI at most once a minute: the
    /// overview is the page everyone keeps open, and parsing every certificate on each visit
    /// would cost more than rendering it.
    certificates: Cached<Result<Vec<(String, i64)>, String>>,
    /// The overview's content, rendered at most once a second however many people (or
    /// load balancers' health checks) keep it open.
    overview: Cached<String>,
}

/// A value computed at most once per `ttl` seconds.
struct Cached<T> {
    ttl: i64,
    value: std::sync::Mutex<Option<(i64, T)>>,
}

impl<T: Clone> Cached<T> {
    fn new(ttl: i64) -> Cached<T> {
        Cached {
            ttl,
            value: std::sync::Mutex::new(None),
        }
    }

    fn get(&self, now: i64, compute: impl FnOnce() -> T) -> T {
        let mut value = self.value.lock().unwrap_or_else(|e| e.into_inner());
        match value.as_ref() {
            Some((at, cached)) if now - at < self.ttl => cached.clone(),
            _ => {
                let fresh = compute();
                *value = Some((now, fresh.clone()));
                fresh
            }
        }
    }
}

impl Console {
    pub fn new(db: Db, config: PathBuf) -> Arc<Console> {
        Console::with_backup_key(db, config, None)
    }

    pub fn with_backup_key(
        db: Db,
        config: PathBuf,
        backup_key_file: Option<PathBuf>,
    ) -> Arc<Console> {
        let db = Arc::new(db);
        let clock = Clock::default();
        Arc::new(Console {
            operations: Operations::new(db.clone(), clock.clone()),
            db,
            clock,
            configuration: Arc::new(Configuration::new(config)),
            health: Health::new(),
            backup_key_file,
            certificates: Cached::new(60),
            overview: Cached::new(1),
        })
    }

    /// Keeps the overview's health current: looks at the cluster now and every `every`.
    pub fn watch_health(&self, every: std::time::Duration) {
        self.health
            .watch(self.configuration.clone(), self.clock.clone(), every);
    }

    pub(crate) fn cluster_name(&self) -> String {
        self.configuration
            .load()
            .map(|loaded| loaded.cluster.name().to_owned())
            .unwrap_or_else(|_| "(configuration unreadable)".into())
    }

    pub(crate) fn audit(&self, user: &str, action: &str, target: &str, result: &str) {
        if let Err(e) = self
            .db
            .audit(self.clock.now(), user, action, target, result)
        {
            tracing::error!("audit entry lost ({user} {action} {target} {result}): {e}");
        }
    }
}

pub(crate) type Shared = Arc<Console>;

pub fn router(console: Shared) -> Router {
    let protected = Router::new()
        .route("/", get(overview))
        .route("/nodes", get(day2::nodes_page).post(day2::node_add))
        .route("/nodes/join-command", post(day2::join_command))
        .route(
            "/nodes/{name}/remove",
            get(day2::node_remove_page).post(day2::node_remove),
        )
        .route("/backups", get(backups_page).post(backup_create))
        .route("/backups/schedule", post(day2::backup_schedule))
        .route("/backups/{name}/download", get(day2::backup_download))
        .route(
            "/backups/{name}/restore",
            get(day2::backup_restore_page).post(day2::backup_restore),
        )
        .route(
            "/upgrades",
            get(day2::upgrades_page).post(day2::upgrade_apply),
        )
        .route("/operations", get(operations_page))
        .route("/operations/{id}", get(operation_page))
        .route("/operations/{id}/events", get(operation_events))
        .route("/audit", get(audit_page))
        .route("/users", get(users_page).post(user_add))
        .route("/users/{name}/role", post(user_role))
        .route("/logout", post(logout))
        .layer(middleware::from_fn_with_state(
            console.clone(),
            require_session,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(crate::assets::routes())
        .route("/login", get(login_page).post(login))
        .route("/setup", get(setup_page).post(setup))
        .merge(protected)
        .layer(middleware::from_fn(security_headers))
        .with_state(console)
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
             img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
             object-src 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

fn set_cookie(name: &str, value: &str, max_age: i64) -> (header::HeaderName, String) {
    (
        header::SET_COOKIE,
        format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}"),
    )
}

/// A request sent by another site's page: browsers say so in `Sec-Fetch-Site`, or with an
/// `Origin` whose host is not ours.
fn cross_site(headers: &HeaderMap, uri: &Uri) -> bool {
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("same-origin");
    if !matches!(fetch_site, "same-origin" | "none") {
        return true;
    }
    // HTTP/2 has no Host header: the authority comes in the request's URI.
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => false,
        Some(origin) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            host != Some(origin_host)
        }
    }
}

fn forbidden(text: &str) -> Response {
    (StatusCode::FORBIDDEN, text.to_owned()).into_response()
}

/// A session for every request that passes; for mutations also a CSRF token that matches it
/// (the form field `csrf` or the header `X-CSRF-Token`), from a same-origin page.
async fn require_session(State(console): State<Shared>, request: Request, next: Next) -> Response {
    let now = console.clock.now();
    let token = cookie(request.headers(), SESSION_COOKIE);
    let session = token.as_deref().and_then(|token| {
        let key = auth::token_sha256(token);
        let session = console.db.session(&key).ok()??;
        let expired = now - session.last_seen > auth::IDLE_TIMEOUT
            || now - session.created > auth::ABSOLUTE_TIMEOUT;
        if expired {
            let _ = console.db.end_session(&key);
            return None;
        }
        // A write per request would serialise every page on the database; a minute's
        // precision is plenty for a 30 minute idle timeout.
        if now - session.last_seen >= 60 {
            let _ = console.db.touch_session(&key, now);
        }
        Some(session)
    });
    let Some(session) = session else {
        if request.method() == Method::GET || request.method() == Method::HEAD {
            let to = if console.db.user_count().unwrap_or(0) == 0 {
                "/setup"
            } else {
                "/login"
            };
            return Redirect::to(to).into_response();
        }
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    };

    let mut request = request;
    let mutation = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if mutation {
        let action = format!("{} {}", request.method(), request.uri().path());
        if cross_site(request.headers(), request.uri()) {
            console.audit(
                &session.user.name,
                &action,
                "",
                "refused: cross-site request",
            );
            return forbidden("refused: the request came from another site");
        }
        let header_token = request
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
            return (StatusCode::PAYLOAD_TOO_LARGE, "request too large").into_response();
        };
        let form_token = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .ok()
            .and_then(|fields| {
                fields
                    .into_iter()
                    .find(|(k, _)| k == "csrf")
                    .map(|(_, v)| v)
            });
        let presented = header_token.or(form_token).unwrap_or_default();
        if !auth::same_token(&presented, &session.csrf) {
            console.audit(&session.user.name, &action, "", "refused: bad CSRF token");
            return forbidden("refused: the form is stale or forged; reload the page");
        }
        request = Request::from_parts(parts, axum::body::Body::from(bytes));
    }
    request.extensions_mut().insert(session);
    next.run(request).await
}

/// The role's check, audited when it refuses.
pub(crate) fn require(
    console: &Console,
    session: &Session,
    role: Role,
    action: &str,
) -> Option<Response> {
    if session.user.role >= role {
        return None;
    }
    console.audit(
        &session.user.name,
        action,
        "",
        &format!("denied: needs role {}", role.as_str()),
    );
    Some(forbidden(&format!(
        "{action} needs the {} role; you are {}",
        role.as_str(),
        session.user.role.as_str()
    )))
}

pub(crate) fn page(
    console: &Console,
    title: &str,
    session: Option<&Session>,
    current: &'static str,
    main: leptos::prelude::AnyView,
) -> Html<String> {
    page_html(console, title, session, current, main.to_html())
}

/// A page around content rendered already.
pub(crate) fn page_html(
    console: &Console,
    title: &str,
    session: Option<&Session>,
    current: &'static str,
    main: String,
) -> Html<String> {
    let cluster = console.cluster_name();
    Html(pages::document(
        title,
        Chrome {
            session,
            cluster: &cluster,
            current,
        },
        main,
    ))
}

/// The login and setup forms' CSRF token: a cookie the form must echo (double submit), as
/// there is no session yet to keep it in.
fn pre_session(headers: &HeaderMap) -> (String, Option<(header::HeaderName, String)>) {
    match cookie(headers, PRE_SESSION_COOKIE) {
        Some(token) if token.len() == 43 => (token, None),
        _ => {
            let token = auth::token();
            let set = set_cookie(PRE_SESSION_COOKIE, &token, 3600);
            (token, Some(set))
        }
    }
}

fn pre_session_ok(headers: &HeaderMap, uri: &Uri, presented: &str) -> bool {
    !cross_site(headers, uri)
        && cookie(headers, PRE_SESSION_COOKIE).is_some_and(|t| auth::same_token(presented, &t))
}

fn start_session(console: &Console, user_id: i64) -> Response {
    let token = auth::token();
    let added = console.db.add_session(
        &auth::token_sha256(&token),
        user_id,
        &auth::token(),
        console.clock.now(),
    );
    match added {
        Ok(()) => (
            [set_cookie(SESSION_COOKIE, &token, auth::ABSOLUTE_TIMEOUT)],
            Redirect::to("/"),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn setup_page(State(console): State<Shared>, headers: HeaderMap) -> Response {
    if console.db.user_count().unwrap_or(1) > 0 {
        return Redirect::to("/login").into_response();
    }
    let (csrf, set) = pre_session(&headers);
    let body = page(&console, "Setup", None, "", pages::setup(&csrf, None));
    (AppendHeaders(set), body).into_response()
}

#[derive(Deserialize)]
struct Credentials {
    #[serde(default)]
    csrf: String,
    name: String,
    password: String,
}

async fn setup(
    State(console): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<Credentials>,
) -> Response {
    if console.db.user_count().unwrap_or(1) > 0 {
        return forbidden("the console is set up already; sign in");
    }
    if !pre_session_ok(&headers, &uri, &form.csrf) {
        return forbidden("refused: the form is stale or forged; reload the page");
    }
    let name = form.name.trim();
    let problem = if name.is_empty() {
        Some("a name is needed".to_owned())
    } else {
        auth::password_problem(&form.password)
    };
    if let Some(problem) = problem {
        let body = page(
            &console,
            "Setup",
            None,
            "",
            pages::setup(&form.csrf, Some(problem)),
        );
        return (StatusCode::UNPROCESSABLE_ENTITY, body).into_response();
    }
    let hash = match auth::hash_password(&form.password) {
        Ok(hash) => hash,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    };
    match console.db.add_first_admin(name, &hash, console.clock.now()) {
        Ok(true) => {}
        Ok(false) => return forbidden("the console is set up already; sign in"),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
    console.audit(name, "setup", name, "admin created");
    let Ok(Some((user, _))) = console.db.credentials(name) else {
        return Redirect::to("/login").into_response();
    };
    start_session(&console, user.id)
}

async fn login_page(State(console): State<Shared>, headers: HeaderMap) -> Response {
    if console.db.user_count().unwrap_or(1) == 0 {
        return Redirect::to("/setup").into_response();
    }
    let (csrf, set) = pre_session(&headers);
    let body = page(&console, "Sign in", None, "", pages::login(&csrf, None));
    (AppendHeaders(set), body).into_response()
}

async fn login(
    State(console): State<Shared>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<Credentials>,
) -> Response {
    if !pre_session_ok(&headers, &uri, &form.csrf) {
        return forbidden("refused: the form is stale or forged; reload the page");
    }
    let now = console.clock.now();
    let name = form.name.trim().to_owned();
    let mut keys = vec![format!("user:{name}")];
    if let Some(Extension(ConnectInfo(address))) = client {
        keys.push(format!("address:{}", address.ip()));
    }
    let limited = keys.iter().any(|key| {
        console
            .db
            .login_failures_since(key, now - auth::FAILURE_WINDOW)
            .unwrap_or(0)
            >= auth::MAX_FAILURES
    });
    if limited {
        console.audit(&name, "login", &name, "refused: too many failed attempts");
        let body = page(
            &console,
            "Sign in",
            None,
            "",
            pages::login(
                &form.csrf,
                Some("Too many failed attempts. Wait 15 minutes, or ask an admin.".into()),
            ),
        );
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, auth::FAILURE_WINDOW.to_string())],
            body,
        )
            .into_response();
    }
    let credentials = console.db.credentials(&name).ok().flatten();
    let hash = credentials
        .as_ref()
        .map_or(auth::decoy_hash(), |(_, hash)| hash.as_str());
    let verified = auth::verify_password(&form.password, hash);
    match credentials {
        Some((user, _)) if verified => {
            let _ = console.db.clear_login_failures(&keys[0]);
            console.audit(&name, "login", &name, "ok");
            start_session(&console, user.id)
        }
        _ => {
            for key in &keys {
                let _ = console.db.record_login_failure(key, now);
            }
            console.audit(&name, "login", &name, "failed: wrong name or password");
            let body = page(
                &console,
                "Sign in",
                None,
                "",
                pages::login(&form.csrf, Some("Wrong name or password.".into())),
            );
            (StatusCode::UNAUTHORIZED, body).into_response()
        }
    }
}

async fn logout(
    State(console): State<Shared>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        let _ = console.db.end_session(&auth::token_sha256(&token));
    }
    console.audit(&session.user.name, "logout", &session.user.name, "ok");
    ([set_cookie(SESSION_COOKIE, "", 0)], Redirect::to("/login")).into_response()
}

async fn overview(
    State(console): State<Shared>,
    Extension(session): Extension<Session>,
) -> Html<String> {
    let now = console.clock.now();
    let main = console.overview.get(now, || overview_main(&console, now));
    page_html(&console, "Overview", Some(&session), "/", main)
}

/// The overview's content, the same for every user: what the console knows of the cluster.
fn overview_main(console: &Console, now: i64) -> String {
    let loaded = console.configuration.load();
    let observation = console.health.latest();
    let health = observation.as_ref().map(|o| match &o.status {
        Ok(status) => pages::Health {
            at: o.at,
            api_error: status.api_error.clone(),
            error: None,
            etcd: status.etcd.clone(),
            version: status.kubernetes_version.clone(),
        },
        Err(e) => pages::Health {
            at: o.at,
            api_error: None,
            error: Some(e.clone()),
            etcd: Vec::new(),
            version: String::new(),
        },
    });
    let nodes = day2::node_rows(console);
    let state = loaded.as_ref().map(|loaded| loaded.state_dir());
    let last_backup = match &state {
        Ok(state) => kinit::ops::backup::list(&kinit::ops::backup::default_dir(state))
            .map(|list| list.last().map(|b| (b.name.clone(), b.created_unix)))
            .map_err(|e| e.to_string()),
        Err(e) => Err((*e).clone()),
    };
    let certificates = console.certificates.get(now, || match &state {
        Ok(state) => kinit::ops::certs::check_expiration(&state.kubernetes())
            .map(|expiry| {
                expiry
                    .certificates
                    .iter()
                    .map(|c| {
                        let name = match &c.node {
                            Some(node) => format!("{} ({node})", c.name),
                            None => c.name.clone(),
                        };
                        (name, c.not_after.unix_timestamp())
                    })
                    .collect()
            })
            .map_err(|e| e.to_string()),
        Err(e) => Err((*e).clone()),
    });
    let running = console
        .operations
        .running()
        .and_then(|id| console.db.operation(id).ok().flatten());
    pages::overview(pages::Overview {
        nodes,
        health,
        last_backup,
        certificates,
        running,
        now,
    })
    .to_html()
}

fn backup_rows(console: &Console) -> Result<Vec<pages::BackupRow>, String> {
    let state = console.configuration.load()?.state_dir();
    let list = kinit::ops::backup::list(&kinit::ops::backup::default_dir(&state))
        .map_err(|e| e.to_string())?;
    Ok(list
        .into_iter()
        .map(|b| pages::BackupRow {
            name: b.name,
            created: b.created_unix,
            size: b.size,
            sha256: b.sha256,
            revision: b.revision,
        })
        .collect())
}

async fn backups_page(
    State(console): State<Shared>,
    Extension(session): Extension<Session>,
) -> Response {
    backups_response(&console, &session, StatusCode::OK, None)
}

pub(crate) fn backups_response(
    console: &Console,
    session: &Session,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let schedule = console
        .configuration
        .load()
        .ok()
        .and_then(|loaded| kinit::ops::backup::current_schedule(&loaded.state_dir()));
    let body = page(
        console,
        "Backups",
        Some(session),
        "/backups",
        pages::backups(pages::Backups {
            list: backup_rows(console),
            schedule,
            session,
            error,
        }),
    );
    (status, body).into_response()
}

/// `kinit backup create`, as the CLI runs it, with its progress in the operation's log.
async fn take_backup(
    configuration: Arc<Configuration>,
    key_file: Option<PathBuf>,
    log: Log,
) -> Result<String, String> {
    use kinit::ops::backup;
    let loaded = configuration.load()?;
    let state = loaded.state_dir();
    let encryption = key_file
        .as_deref()
        .map(kinit::ops::sealed::Key::read)
        .transpose()?;
    log.line(format!(
        "taking a snapshot of etcd in cluster {} from its first healthy member{}",
        loaded.cluster.name(),
        if encryption.is_some() {
            ", sealed with the backup key"
        } else {
            ""
        }
    ));
    let options = backup::CreateOptions {
        dir: backup::default_dir(&state),
        keep_on_node: false,
        bundle: None,
        encryption,
    };
    let run = kinit::engine::runner::RunOptions::default();
    let info = backup::create(&loaded.cluster, &state, &run, &options)
        .await
        .map_err(|e| e.to_string())?;
    log.line(format!(
        "streamed {} from {}, etcd's checksum and `snapshot status` agree (revision {}, {} keys)",
        kinit::ops::backup::human_size(info.size),
        info.member,
        info.revision,
        info.total_keys
    ));
    Ok(format!(
        "backup {} taken, sha256 {}",
        info.name, info.sha256
    ))
}

async fn backup_create(
    State(console): State<Shared>,
    Extension(session): Extension<Session>,
) -> Response {
    if let Some(refused) = require(&console, &session, Role::Operator, "backup create") {
        return refused;
    }
    let cluster = console.cluster_name();
    let configuration = console.configuration.clone();
    let key_file = console.backup_key_file.clone();
    start_operation(
        &console,
        &session,
        "backup create",
        &cluster,
        "/backups",
        move |log| take_backup(configuration, key_file, log),
    )
}

/// Starts `work` as the console's operation and sends the browser to its live log; when
/// another operation runs, says so (409) and changes nothing. Audited either way.
pub(crate) fn start_operation<F, Fut>(
    console: &Shared,
    session: &Session,
    action: &str,
    target: &str,
    back: &'static str,
    work: F,
) -> Response
where
    F: FnOnce(Log) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<String, String>> + Send + 'static,
{
    match console
        .operations
        .start(action, target, &session.user.name, work)
    {
        Ok(id) => {
            console.audit(
                &session.user.name,
                action,
                target,
                &format!("started operation {id}"),
            );
            Redirect::to(&format!("/operations/{id}")).into_response()
        }
        Err(StartError::Busy(id)) => {
            console.audit(
                &session.user.name,
                action,
                target,
                &format!("refused: operation {id} is running"),
            );
            let body = page(console, "Busy", Some(session), back, pages::busy(id));
            (StatusCode::CONFLICT, body).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn operations_page(
    State(console): State<Shared>,
    Extension(session): Extension<Session>,
) -> Response {
    match console.db.operations(200) {
        Ok(list) => page(
            &console,
            "Operations",
            Some(&session),
            "/operations",
            pages::operations(list),
        )
        .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn operation_page(
    State(console): State<Shared>,
    Extension(session): Extension<Session>,
    UrlPath(id): UrlPath<i64>,
) -> Response {
    let Ok(Some(op)) = console.db.operation(id) else {
        let body = page(
            &console,
            "Operations",
            Some(&session),
            "/operations",
            pages::message("No such operation", format!("There is no operation {id}.")),
        );
        return (StatusCode::NOT_FOUND, body).into_response();
    };
    let lines = console.db.lines_after(id, 0).unwrap_or_default();
    let lines = lines
        .into_iter()
        .map(|l| kinit_console_ui::LogLine {
            seq: l.seq,
            text: l.line,
        })
        .collect();
    page(
        &console,
        "Operation",
        Some(&session),
        "/operations",
        pages::operation(op, lines),
    )
    .into_response()
}

#[derive(Deserialize)]
struct After {
    #[serde(default)]
    after: i64,
}

/// Server-sent events of an operation's log: every line after `after` (or the
/// `Last-Event-ID` the browser sends when it reconnects), then live lines, then `end`.
async fn operation_events(
    State(console): State<Shared>,
    UrlPath(id): UrlPath<i64>,
    Query(query): Query<After>,
    headers: HeaderMap,
) -> Response {
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(query.after);
    if !matches!(console.db.operation(id), Ok(Some(_))) {
        return (StatusCode::NOT_FOUND, "no such operation").into_response();
    }
    Sse::new(log_stream(console, id, after))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn log_stream(
    console: Shared,
    id: i64,
    after: i64,
) -> impl Stream<Item = Result<Event, Infallible>> {
    // Subscribe before reading the backlog, so no line falls between the two.
    let live = console.operations.subscribe(id);
    let state = (console, live, after, Vec::<Event>::new(), false);
    futures::stream::unfold(
        state,
        move |(console, mut live, mut last, mut pending, done)| async move {
            loop {
                if let Some(event) = pending.pop() {
                    return Some((Ok(event), (console, live, last, pending, done)));
                }
                if done {
                    return None;
                }
                let backlog = console.db.lines_after(id, last).unwrap_or_default();
                if !backlog.is_empty() {
                    last = backlog.last().map_or(last, |l| l.seq);
                    pending = backlog
                        .into_iter()
                        .rev()
                        .map(|l| Event::default().id(l.seq.to_string()).data(l.line))
                        .collect();
                    continue;
                }
                let Some(receiver) = live.as_mut() else {
                    let result = console
                        .db
                        .operation(id)
                        .ok()
                        .flatten()
                        .map_or_else(|| "unknown".to_owned(), |op| op.result);
                    pending = vec![Event::default().event("end").data(result)];
                    return Some((
                        Ok(pending.pop().expect("one")),
                        (console, live, last, pending, true),
                    ));
                };
                match receiver.recv().await {
                    Ok(line) if line.seq <= last => {}
                    Ok(line) => {
                        last = line.seq;
                        return Some((
                            Ok(Event::default().id(line.seq.to_string()).data(line.line)),
                            (console, live, last, pending, done),
                        ));
                    }
                    // Fell behind: the next turn reads what was missed from the database.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => live = None,
                }
            }
        },
    )
}

async fn audit_page(
    State(console): State<Shared>,
    Extension(session): Extension<Session>,
) -> Response {
    if let Some(refused) = require(&console, &session, Role::Admin, "read the audit log") {
        return refused;
    }
    match console.db.audit_log(500) {
        Ok(entries) => page(
            &console,
            "Audit log",
            Some(&session),
            "/audit",
            pages::audit(entries),
        )
        .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn users_page(
    State(console): State<Shared>,
    Extension(session): Extension<Session>,
) -> Response {
    if let Some(refused) = require(&console, &session, Role::Admin, "manage users") {
        return refused;
    }
    let users = console.db.users().unwrap_or_default();
    page(
        &console,
        "Users",
        Some(&session),
        "/users",
        pages::users(users, &session.csrf, None),
    )
    .into_response()
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
    password: String,
    role: String,
}

async fn user_add(
    State(console): State<Shared>,
    Extension(session): Extension<Session>,
    Form(form): Form<NewUser>,
) -> Response {
    if let Some(refused) = require(&console, &session, Role::Admin, "user add") {
        return refused;
    }
    let name = form.name.trim();
    let result = match Role::parse(&form.role) {
        None => Err(format!(
            "unknown role {:?}: viewer, operator or admin",
            form.role
        )),
        Some(_) if name.is_empty() => Err("a name is needed".to_owned()),
        Some(role) => match auth::password_problem(&form.password) {
            Some(problem) => Err(problem),
            None => auth::hash_password(&form.password).and_then(|hash| {
                console
                    .db
                    .add_user(name, &hash, role, console.clock.now())
                    .map_err(|_| format!("a user named {name} exists already"))
            }),
        },
    };
    match result {
        Ok(_) => {
            console.audit(
                &session.user.name,
                "user add",
                name,
                &format!("ok: {}", form.role),
            );
            Redirect::to("/users").into_response()
        }
        Err(problem) => {
            console.audit(
                &session.user.name,
                "user add",
                name,
                &format!("refused: {problem}"),
            );
            let users = console.db.users().unwrap_or_default();
            let body = page(
                &console,
                "Users",
                Some(&session),
                "/users",
                pages::users(users, &session.csrf, Some(problem)),
            );
            (StatusCode::UNPROCESSABLE_ENTITY, body).into_response()
        }
    }
}

#[derive(Deserialize)]
struct RoleChange {
    role: String,
}

async fn user_role(
    State(console): State<Shared>,
    Extension(session): Extension<Session>,
    UrlPath(name): UrlPath<String>,
    Form(form): Form<RoleChange>,
) -> Response {
    if let Some(refused) = require(&console, &session, Role::Admin, "user role") {
        return refused;
    }
    let users = console.db.users().unwrap_or_default();
    let admins = users.iter().filter(|u| u.role == Role::Admin).count();
    let result = match Role::parse(&form.role) {
        None => Err(format!(
            "unknown role {:?}: viewer, operator or admin",
            form.role
        )),
        Some(role) => match users.iter().find(|u| u.name == name) {
            None => Err(format!("no user named {name}")),
            Some(user) if user.role == Role::Admin && role != Role::Admin && admins == 1 => Err(
                format!("{name} is the only admin; make another user admin first"),
            ),
            Some(_) => console
                .db
                .set_role(&name, role)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        },
    };
    match result {
        Ok(()) => {
            console.audit(
                &session.user.name,
                "user role",
                &name,
                &format!("ok: {}", form.role),
            );
            Redirect::to("/users").into_response()
        }
        Err(problem) => {
            console.audit(
                &session.user.name,
                "user role",
                &name,
                &format!("refused: {problem}"),
            );
            let body = page(
                &console,
                "Users",
                Some(&session),
                "/users",
                pages::users(
                    console.db.users().unwrap_or_default(),
                    &session.csrf,
                    Some(problem),
                ),
            );
            (StatusCode::UNPROCESSABLE_ENTITY, body).into_response()
        }
    }
}
