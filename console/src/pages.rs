//! The pages, rendered on the server with Leptos. Every form carries the session's CSRF token;
//! every table has an empty state; errors are shown where the data would be.

use leptos::prelude::*;

use crate::db::{AuditEntry, Line, Operation, Role, Session, User};

/// The signed-in user as the page chrome needs them.
pub struct Chrome<'a> {
    pub session: Option<&'a Session>,
    pub cluster: &'a str,
    pub current: &'static str,
}

const SECTIONS: &[(&str, &str, Role)] = &[
    ("/", "Overview", Role::Viewer),
    ("/backups", "Backups", Role::Viewer),
    ("/operations", "Operations", Role::Viewer),
    ("/audit", "Audit log", Role::Admin),
    ("/users", "Users", Role::Admin),
];

pub fn document(title: &str, chrome: Chrome<'_>, main: AnyView) -> String {
    let title = format!("{title} · kinit");
    let cluster = chrome.cluster.to_owned();
    let header = chrome.session.map(|session| {
        let links = SECTIONS
            .iter()
            .filter(|(_, _, role)| session.user.role >= *role)
            .map(|(href, label, _)| {
                let current = (*href == chrome.current).then_some("page");
                view! { <li><a href=*href aria-current=current>{*label}</a></li> }
            })
            .collect_view();
        let who = format!("{} ({})", session.user.name, session.user.role.as_str());
        let csrf = session.csrf.clone();
        view! {
            <header>
                <a class="brand" href="/">"kinit · " {cluster.clone()}</a>
                <nav aria-label="Sections"><ul>{links}</ul></nav>
                <form method="post" action="/logout" class="logout">
                    <span>{who}</span>
                    <input type="hidden" name="csrf" value=csrf/>
                    <button type="submit">"Log out"</button>
                </form>
            </header>
        }
    });
    let view = view! {
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <title>{title}</title>
                <link rel="stylesheet" href="/assets/console.css"/>
            </head>
            <body>
                <a class="skip" href="#main">"Skip to content"</a>
                {header}
                <main id="main">{main}</main>
            </body>
        </html>
    };
    format!("<!DOCTYPE html>{}", view.to_html())
}

fn problem(message: Option<String>) -> impl IntoView {
    message.map(|m| view! { <p class="error" role="alert">{m}</p> })
}

pub fn setup(csrf: &str, error: Option<String>) -> AnyView {
    let csrf = csrf.to_owned();
    view! {
        <h1>"Welcome to kinit"</h1>
        <p>"Nobody can sign in yet. Choose the first administrator's name and password."</p>
        {problem(error)}
        <form method="post" action="/setup" class="card">
            <input type="hidden" name="csrf" value=csrf/>
            <label>"Name" <input name="name" required autocomplete="username" autofocus/></label>
            <label>"Password (12 characters or more)"
                <input name="password" type="password" required minlength="12" autocomplete="new-password"/>
            </label>
            <button type="submit">"Create the administrator"</button>
        </form>
    }
    .into_any()
}

pub fn login(csrf: &str, error: Option<String>) -> AnyView {
    let csrf = csrf.to_owned();
    view! {
        <h1>"Sign in"</h1>
        {problem(error)}
        <form method="post" action="/login" class="card">
            <input type="hidden" name="csrf" value=csrf/>
            <label>"Name" <input name="name" required autocomplete="username" autofocus/></label>
            <label>"Password" <input name="password" type="password" required autocomplete="current-password"/></label>
            <button type="submit">"Sign in"</button>
        </form>
    }
    .into_any()
}

pub fn message(heading: &str, text: String) -> AnyView {
    let heading = heading.to_owned();
    view! { <h1>{heading}</h1><p class="error" role="alert">{text}</p> }.into_any()
}

/// A point in time, UTC, readable.
pub fn when(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

pub fn age(seconds: i64) -> String {
    if seconds < 120 {
        format!("{seconds} s ago")
    } else if seconds < 7200 {
        format!("{} min ago", seconds / 60)
    } else if seconds < 172_800 {
        format!("{} h ago", seconds / 3600)
    } else {
        format!("{} days ago", seconds / 86_400)
    }
}

/// What the overview shows; each part may have failed on its own.
pub struct Overview {
    pub nodes: Result<Vec<NodeRow>, String>,
    pub last_backup: Result<Option<(String, i64)>, String>,
    pub certificates: Result<Vec<(String, i64)>, String>,
    pub running: Option<Operation>,
    pub now: i64,
}

pub struct NodeRow {
    pub name: String,
    pub address: String,
    pub roles: String,
}

pub fn overview(data: Overview) -> AnyView {
    let now = data.now;
    let nodes = match data.nodes {
        Ok(nodes) if nodes.is_empty() => {
            view! { <p>"The configuration names no hosts."</p> }.into_any()
        }
        Ok(nodes) => {
            let rows = nodes
                .into_iter()
                .map(|n| view! { <tr><td>{n.name}</td><td>{n.roles}</td><td>{n.address}</td></tr> })
                .collect_view();
            view! {
                <table>
                    <thead><tr><th scope="col">"Node"</th><th scope="col">"Roles"</th><th scope="col">"Address"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            }
            .into_any()
        }
        Err(e) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
    };
    let backup = match data.last_backup {
        Ok(Some((name, at))) => {
            let text = format!("{name}, {}", age(now - at));
            view! { <p>{text}</p> }.into_any()
        }
        Ok(None) => {
            view! { <p class="warning">"No backup yet. "<a href="/backups">"Take one"</a></p> }
                .into_any()
        }
        Err(e) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
    };
    let certificates = match data.certificates {
        Ok(certificates) if certificates.is_empty() => {
            view! { <p>"No certificates in the state directory."</p> }.into_any()
        }
        Ok(certificates) => {
            let rows = certificates
                .into_iter()
                .map(|(name, not_after)| {
                    let days = (not_after - now) / 86_400;
                    let class = if days <= 30 { "warning" } else { "" };
                    let left = format!("{days} days");
                    view! { <tr class=class><td>{name}</td><td>{when(not_after)}</td><td>{left}</td></tr> }
                })
                .collect_view();
            view! {
                <table>
                    <thead><tr><th scope="col">"Certificate"</th><th scope="col">"Expires"</th><th scope="col">"Left"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            }
            .into_any()
        }
        Err(e) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
    };
    let running = match data.running {
        Some(op) => {
            let href = format!("/operations/{}", op.id);
            let text = format!("{} on {}, started by {}", op.kind, op.target, op.user);
            view! { <p><a href=href>{text}</a></p> }.into_any()
        }
        None => view! { <p>"Nothing is running."</p> }.into_any(),
    };
    view! {
        <h1>"Overview"</h1>
        <section aria-labelledby="nodes"><h2 id="nodes">"Nodes"</h2>{nodes}</section>
        <section aria-labelledby="running"><h2 id="running">"Running operation"</h2>{running}</section>
        <section aria-labelledby="backup"><h2 id="backup">"Last backup"</h2>{backup}</section>
        <section aria-labelledby="certs"><h2 id="certs">"Certificates"</h2>{certificates}</section>
    }
    .into_any()
}

pub struct BackupRow {
    pub name: String,
    pub created: i64,
    pub size: u64,
    pub sha256: String,
    pub revision: i64,
}

pub fn backups(
    list: Result<Vec<BackupRow>, String>,
    csrf: &str,
    can_create: bool,
    error: Option<String>,
) -> AnyView {
    let table = match list {
        Ok(rows) if rows.is_empty() => view! { <p>"No backups yet."</p> }.into_any(),
        Ok(rows) => {
            let rows = rows
                .into_iter()
                .rev()
                .map(|b| {
                    view! {
                        <tr>
                            <td>{b.name}</td>
                            <td>{when(b.created)}</td>
                            <td>{kinit::ops::backup::human_size(b.size)}</td>
                            <td><code class="sha256">{b.sha256}</code></td>
                            <td>{b.revision}</td>
                        </tr>
                    }
                })
                .collect_view();
            view! {
                <table>
                    <thead><tr>
                        <th scope="col">"Backup"</th><th scope="col">"Taken"</th><th scope="col">"Size"</th>
                        <th scope="col">"sha256"</th><th scope="col">"etcd revision"</th>
                    </tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            }
            .into_any()
        }
        Err(e) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
    };
    let csrf = csrf.to_owned();
    let create = can_create.then(|| {
        view! {
            <form method="post" action="/backups">
                <input type="hidden" name="csrf" value=csrf/>
                <button type="submit">"Back up etcd now"</button>
            </form>
        }
    });
    view! { <h1>"Backups"</h1>{problem(error)}{create}{table} }.into_any()
}

pub fn operations(list: Vec<Operation>) -> AnyView {
    if list.is_empty() {
        return view! { <h1>"Operations"</h1><p>"No operation has run from the console yet."</p> }
            .into_any();
    }
    let rows = list
        .into_iter()
        .map(|op| {
            let href = format!("/operations/{}", op.id);
            let label = format!("#{} {}", op.id, op.kind);
            view! {
                <tr>
                    <td><a href=href>{label}</a></td>
                    <td>{op.target}</td>
                    <td>{op.user}</td>
                    <td>{when(op.started)}</td>
                    <td class=op.result.clone()>{op.result.clone()}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <h1>"Operations"</h1>
        <table>
            <thead><tr>
                <th scope="col">"Operation"</th><th scope="col">"Cluster"</th><th scope="col">"By"</th>
                <th scope="col">"Started"</th><th scope="col">"Result"</th>
            </tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}

/// One operation: the log so far, then live lines (operation.js follows the stream from the
/// last line rendered here, so a reload misses nothing and repeats nothing).
pub fn operation(op: Operation, lines: Vec<Line>) -> AnyView {
    let last = lines.last().map_or(0, |l| l.seq).to_string();
    let heading = format!("#{} {} on {}", op.id, op.kind, op.target);
    let status = op.result.clone();
    let items = lines
        .into_iter()
        .map(|l| view! { <li data-seq=l.seq.to_string()>{l.line}</li> })
        .collect_view();
    let events = format!("/operations/{}/events", op.id);
    let started = format!("started {} by {}", when(op.started), op.user);
    view! {
        <h1>{heading}</h1>
        <p>{started}" · " <strong id="status" role="status" class=status.clone()>{status.clone()}</strong></p>
        <ol id="log" class="log" aria-live="polite" data-events=events data-last=last data-status=status>{items}</ol>
        <script src="/assets/operation.js" defer></script>
    }
    .into_any()
}

pub fn audit(entries: Vec<AuditEntry>) -> AnyView {
    let rows = entries
        .into_iter()
        .map(|e| {
            view! { <tr><td>{when(e.at)}</td><td>{e.user}</td><td>{e.action}</td><td>{e.target}</td><td>{e.result}</td></tr> }
        })
        .collect_view();
    view! {
        <h1>"Audit log"</h1>
        <table>
            <thead><tr>
                <th scope="col">"When"</th><th scope="col">"Who"</th><th scope="col">"What"</th>
                <th scope="col">"On"</th><th scope="col">"Result"</th>
            </tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}

pub fn users(users: Vec<User>, csrf: &str, error: Option<String>) -> AnyView {
    let rows = users
        .into_iter()
        .map(|u| view! { <tr><td>{u.name}</td><td>{u.role.as_str()}</td></tr> })
        .collect_view();
    let csrf = csrf.to_owned();
    view! {
        <h1>"Users"</h1>
        {problem(error)}
        <table>
            <thead><tr><th scope="col">"Name"</th><th scope="col">"Role"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
        <h2>"Add a user"</h2>
        <form method="post" action="/users" class="card">
            <input type="hidden" name="csrf" value=csrf/>
            <label>"Name" <input name="name" required/></label>
            <label>"Password (12 characters or more)" <input name="password" type="password" required minlength="12" autocomplete="new-password"/></label>
            <label>"Role"
                <select name="role">
                    <option value="viewer">"viewer: sees everything"</option>
                    <option value="operator">"operator: also runs operations"</option>
                    <option value="admin">"admin: also manages users"</option>
                </select>
            </label>
            <button type="submit">"Add"</button>
        </form>
    }
    .into_any()
}
