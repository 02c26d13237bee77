//! The pages, rendered on the server with Leptos. Every form carries the session's CSRF token;
//! every table has an empty state; errors are shown where the data would be.

use leptos::prelude::*;

use kinit_console_ui::{ConfirmAction, LogLine, OperationLog};

use crate::db::{AuditEntry, Operation, Role, Session, User};

/// The signed-in user as the page chrome needs them.
pub struct Chrome<'a> {
    pub session: Option<&'a Session>,
    pub cluster: &'a str,
    pub current: &'static str,
}

const SECTIONS: &[(&str, &str, Role)] = &[
    ("/", "Overview", Role::Viewer),
    ("/nodes", "Nodes", Role::Viewer),
    ("/backups", "Backups", Role::Viewer),
    ("/upgrades", "Upgrades", Role::Viewer),
    ("/operations", "Operations", Role::Viewer),
    ("/audit", "Audit log", Role::Admin),
    ("/users", "Users", Role::Admin),
];

/// A whole page around `main`, content rendered already (so that content the same for
/// everyone can be rendered once and shared).
pub fn document(title: &str, chrome: Chrome<'_>, main: String) -> String {
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
                {crate::assets::islands().then(|| view! { <script type="module" src=crate::assets::loader_path()></script> })}
            </head>
            <body>
                <a class="skip" href="#main">"Skip to content"</a>
                {header}
                <main id="main" inner_html=main></main>
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
    /// `None` until the first look at the cluster is done.
    pub health: Option<Health>,
    pub last_backup: Result<Option<(String, i64)>, String>,
    pub certificates: Result<Vec<(String, i64)>, String>,
    pub running: Option<Operation>,
    pub now: i64,
}

/// The latest look at the cluster's health.
pub struct Health {
    pub at: i64,
    /// Kubernetes version the cluster runs, as kinit recorded it.
    pub version: String,
    /// The look failed as a whole (configuration, timeout).
    pub error: Option<String>,
    /// The API server or etcd could not be asked.
    pub api_error: Option<String>,
    pub etcd: Vec<kinit::ops::status::EtcdMember>,
}

/// A host of the configuration, and what the latest look found on it.
pub struct NodeRow {
    pub name: String,
    pub address: String,
    pub roles: String,
    pub observed: Option<kinit::ops::status::NodeStatus>,
}

/// Ready state, version and services of a node, with what is wrong in words.
fn node_cells(observed: Option<kinit::ops::status::NodeStatus>) -> impl IntoView {
    match observed {
        None => view! {
            <td class="muted">"checking…"</td><td></td><td class="muted">"checking…"</td>
        }
        .into_any(),
        Some(node) if node.unreachable.is_some() => {
            let why = format!("unreachable: {}", node.unreachable.unwrap_or_default());
            view! { <td class="error">"unknown"</td><td></td><td class="error">{why}</td> }
                .into_any()
        }
        Some(node) => {
            let (ready, class) = match node.ready {
                Some(true) => ("Ready", "ok"),
                Some(false) => ("NotReady", "error"),
                None => ("unknown", "warning"),
            };
            let down: Vec<String> = node
                .services
                .iter()
                .filter(|(_, state)| state.as_str() != "active")
                .map(|(unit, state)| format!("{unit} {state}"))
                .collect();
            let services = if down.is_empty() {
                view! { <td class="ok">{format!("all {} running", node.services.len())}</td> }
                    .into_any()
            } else {
                view! { <td class="error">{down.join(", ")}</td> }.into_any()
            };
            view! {
                <td class=class>{ready}</td>
                <td>{node.kubelet_version.unwrap_or_default()}</td>
                {services}
            }
            .into_any()
        }
    }
}

fn node_table(nodes: Vec<NodeRow>, actions: Option<&str>) -> AnyView {
    let with_actions = actions.is_some();
    let rows = nodes
        .into_iter()
        .map(|n| {
            let remove = with_actions.then(|| {
                let href = format!("/nodes/{}/remove", n.name);
                let label = format!("Remove {}…", n.name);
                view! { <td><a href=href>{label}</a></td> }
            });
            view! {
                <tr>
                    <th scope="row">{n.name}</th>
                    <td>{n.roles}</td>
                    <td>{n.address}</td>
                    {node_cells(n.observed)}
                    {remove}
                </tr>
            }
        })
        .collect_view();
    let action_header = with_actions.then(|| view! { <th scope="col">"Actions"</th> });
    view! {
        <table id="node-table">
            <thead><tr>
                <th scope="col">"Node"</th><th scope="col">"Roles"</th><th scope="col">"Address"</th>
                <th scope="col">"Ready"</th><th scope="col">"Version"</th><th scope="col">"Services"</th>
                {action_header}
            </tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}

fn nodes_section(nodes: Result<Vec<NodeRow>, String>, actions: Option<&str>) -> AnyView {
    match nodes {
        Ok(nodes) if nodes.is_empty() => {
            view! { <p>"The configuration names no hosts."</p> }.into_any()
        }
        Ok(nodes) => node_table(nodes, actions),
        Err(e) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
    }
}

pub fn overview(data: Overview) -> AnyView {
    let now = data.now;
    let nodes = nodes_section(data.nodes, None);
    let health = match data.health {
        None => view! { <p class="muted">"Looking at the cluster…"</p> }.into_any(),
        Some(health) => {
            let checked = format!("Checked {}.", age(now - health.at));
            let problem = health
                .error
                .or(health.api_error)
                .map(|e| view! { <p class="error" role="alert">{e}</p> });
            let version = (!health.version.is_empty())
                .then(|| view! { <p>"Kubernetes " {health.version.clone()}</p> });
            let members = (!health.etcd.is_empty()).then(|| {
                let rows = health
                    .etcd
                    .into_iter()
                    .map(|m| {
                        let (state, class) = if m.healthy {
                            ("healthy", "ok")
                        } else {
                            ("unhealthy", "error")
                        };
                        let leader = if m.leader { "leader" } else { "" };
                        let size = m.db_size.map(kinit::ops::backup::human_size).unwrap_or_default();
                        view! {
                            <tr><td>{m.endpoint}</td><td class=class>{state}</td><td>{leader}</td>
                            <td>{m.version.unwrap_or_default()}</td><td>{size}</td></tr>
                        }
                    })
                    .collect_view();
                view! {
                    <table id="etcd-table">
                        <thead><tr><th scope="col">"etcd member"</th><th scope="col">"Health"</th>
                        <th scope="col">"Role"</th><th scope="col">"Version"</th><th scope="col">"Database"</th></tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                }
            });
            view! { {version}{problem}{members}<p class="muted">{checked}</p> }.into_any()
        }
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
        <section aria-labelledby="health"><h2 id="health">"Control plane and etcd"</h2>{health}</section>
        <section aria-labelledby="running"><h2 id="running">"Running operation"</h2>{running}</section>
        <section aria-labelledby="backup"><h2 id="backup">"Last backup"</h2>{backup}</section>
        <section aria-labelledby="certs"><h2 id="certs">"Certificates"</h2>{certificates}</section>
    }
    .into_any()
}

pub fn nodes(
    nodes: Result<Vec<NodeRow>, String>,
    session: &Session,
    join_command: Option<String>,
    error: Option<String>,
) -> AnyView {
    let operator = session.user.role >= Role::Operator;
    let table = nodes_section(nodes, operator.then_some("remove"));
    let csrf = session.csrf.clone();
    let actions = operator.then(|| {
        let command = join_command.map(|command| {
            view! {
                <div class="card" id="join-command">
                    <p>"Run this on the new machine (as root) within 24 hours. It holds a secret: share it only with that machine."</p>
                    <pre><code>{command}</code></pre>
                </div>
            }
        });
        view! {
            <h2>"Add a node"</h2>
            <form method="post" action="/nodes" class="card">
                <input type="hidden" name="csrf" value=csrf.clone()/>
                <p>"kinit adds the host to the configuration file and joins it over SSH, as "
                   <code>"kinit join -c cluster.yaml --node NAME"</code>" does."</p>
                <label>"Name" <input name="name" required pattern="[a-z0-9]([-a-z0-9]*[a-z0-9])?"/></label>
                <label>"Address" <input name="address" required/></label>
                <label>"Role"
                    <select name="role">
                        <option value="worker">"worker"</option>
                        <option value="control-plane">"control plane (with an etcd member)"</option>
                    </select>
                </label>
                <button type="submit">"Add and join"</button>
            </form>
            <h2>"Join a machine by itself"</h2>
            <form method="post" action="/nodes/join-command">
                <input type="hidden" name="csrf" value=csrf/>
                <p>"For a machine that runs "<code>"kinit join"</code>" itself, as with kubeadm: a command with a new bootstrap token, valid for 24 hours."</p>
                <button type="submit">"Show a join command"</button>
            </form>
            {command}
        }
    });
    view! { <h1>"Nodes"</h1>{problem(error)}{table}{actions} }.into_any()
}

/// An action that cannot be undone: what it does, and the word to type to go on.
pub struct Confirm {
    pub heading: String,
    pub consequences: Vec<String>,
    pub action: String,
    pub word: String,
    pub button: String,
    pub csrf: String,
    /// Where "Cancel" goes.
    pub back: &'static str,
}

pub fn confirm(c: Confirm) -> AnyView {
    let items = c
        .consequences
        .into_iter()
        .map(|text| view! { <li>{text}</li> })
        .collect_view();
    view! {
        <h1>{c.heading}</h1>
        <ul class="consequences">{items}</ul>
        <form method="post" action=c.action class="card danger">
            <input type="hidden" name="csrf" value=c.csrf/>
            <ConfirmAction word=c.word button=c.button/>
            " " <a href=c.back>"Cancel"</a>
        </form>
    }
    .into_any()
}

pub fn busy(id: i64) -> AnyView {
    let href = format!("/operations/{id}");
    let text = format!("operation {id}");
    view! {
        <h1>"One operation at a time"</h1>
        <p class="error" role="alert">"Nothing was started: " <a href=href>{text}</a>
        " is running. Wait for it to end, then try again."</p>
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

pub struct Backups<'a> {
    pub list: Result<Vec<BackupRow>, String>,
    pub schedule: Option<kinit::ops::backup::Schedule>,
    pub session: &'a Session,
    pub error: Option<String>,
}

pub fn backups(data: Backups<'_>) -> AnyView {
    let operator = data.session.user.role >= Role::Operator;
    let table = match data.list {
        Ok(rows) if rows.is_empty() => view! { <p>"No backups yet."</p> }.into_any(),
        Ok(rows) => {
            let rows = rows
                .into_iter()
                .rev()
                .map(|b| {
                    let download = format!("/backups/{}/download", b.name);
                    let restore = operator.then(|| {
                        let href = format!("/backups/{}/restore", b.name);
                        view! { " · " <a href=href>"Restore…"</a> }
                    });
                    view! {
                        <tr>
                            <th scope="row">{b.name}</th>
                            <td>{when(b.created)}</td>
                            <td>{kinit::ops::backup::human_size(b.size)}</td>
                            <td><code class="sha256">{b.sha256}</code></td>
                            <td>{b.revision}</td>
                            <td><a href=download>"Download"</a>{restore}</td>
                        </tr>
                    }
                })
                .collect_view();
            view! {
                <table id="backup-table">
                    <thead><tr>
                        <th scope="col">"Backup"</th><th scope="col">"Taken"</th><th scope="col">"Size"</th>
                        <th scope="col">"sha256"</th><th scope="col">"etcd revision"</th><th scope="col">"Actions"</th>
                    </tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            }
            .into_any()
        }
        Err(e) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
    };
    let current = match &data.schedule {
        Some(s) => {
            let mut keep = Vec::new();
            if let Some(n) = s.retention.keep_last {
                keep.push(format!("the last {n}"));
            }
            if let Some(d) = s.retention.keep_days {
                keep.push(format!("{d} days"));
            }
            let keep = if keep.is_empty() {
                "everything".to_owned()
            } else {
                keep.join(" and ")
            };
            format!("On every etcd member: {} (cron), keeping {keep}.", s.cron)
        }
        None => "No scheduled backups.".to_owned(),
    };
    let csrf = data.session.csrf.clone();
    let (cron, last, days) = match &data.schedule {
        Some(s) => (
            s.cron.clone(),
            s.retention
                .keep_last
                .map(|n| n.to_string())
                .unwrap_or_default(),
            s.retention
                .keep_days
                .map(|n| n.to_string())
                .unwrap_or_default(),
        ),
        None => ("0 3 * * *".to_owned(), "7".to_owned(), String::new()),
    };
    let actions = operator.then(|| {
        view! {
            <form method="post" action="/backups">
                <input type="hidden" name="csrf" value=csrf.clone()/>
                <button type="submit">"Back up etcd now"</button>
            </form>
            <h2>"Schedule"</h2>
            <p>{current.clone()}</p>
            <form method="post" action="/backups/schedule" class="card">
                <input type="hidden" name="csrf" value=csrf/>
                <label>"When (cron: minute hour day month weekday; empty turns scheduling off)"
                    <input name="cron" value=cron/></label>
                <label>"Keep the last" <input name="keep_last" inputmode="numeric" value=last/></label>
                <label>"Keep days" <input name="keep_days" inputmode="numeric" value=days/></label>
                <button type="submit">"Save the schedule"</button>
            </form>
        }
    });
    let schedule_only = (!operator).then(|| view! { <h2>"Schedule"</h2><p>{current}</p> });
    view! { <h1>"Backups"</h1>{problem(data.error)}{actions}{schedule_only}<h2>"Taken"</h2>{table} }
        .into_any()
}

/// An upgrade that stopped: its target and the nodes it finished.
pub type Unfinished = Option<(kinit::config::KubernetesVersion, Vec<String>)>;

pub fn upgrades(
    planned: Result<(kinit::ops::upgrade::Plan, Unfinished), String>,
    session: &Session,
) -> AnyView {
    let (plan, unfinished) = match planned {
        Ok(planned) => planned,
        Err(e) => {
            return view! { <h1>"Upgrades"</h1><p class="error" role="alert">{e}</p> }.into_any();
        }
    };
    let operator = session.user.role >= Role::Operator;
    let csrf = session.csrf.clone();
    let nodes = plan
        .nodes
        .iter()
        .map(|(node, version)| view! { <tr><th scope="row">{node.clone()}</th><td>{version.clone()}</td></tr> })
        .collect_view();
    let resume = unfinished.map(|(target, done)| {
        let text = format!(
            "An upgrade to {target} stopped before every node was done ({} done: {}).",
            done.len(),
            if done.is_empty() {
                "none".to_owned()
            } else {
                done.join(", ")
            }
        );
        let form = operator.then(|| {
            view! {
                <form method="post" action="/upgrades">
                    <input type="hidden" name="csrf" value=csrf.clone()/>
                    <input type="hidden" name="version" value=target.to_string()/>
                    <input type="hidden" name="resume" value="true"/>
                    <button type="submit">{format!("Resume the upgrade to {target}")}</button>
                </form>
            }
        });
        view! { <div class="card warning" role="status"><p>{text}</p>{form}</div> }
    });
    let candidates = if plan.candidates.is_empty() {
        view! { <p>"No other version is available: build or fetch a bundle ("<code>"kinit bundle create"</code>")."</p> }.into_any()
    } else {
        plan.candidates
            .iter()
            .map(|c| {
                let version = c.version.to_string();
                match &c.refused {
                    Some(reason) => {
                        let text = format!("{version}: refused, {reason}");
                        view! { <li>{text}</li> }.into_any()
                    }
                    None => {
                        let button = operator.then(|| {
                            view! {
                                <form method="post" action="/upgrades" class="inline">
                                    <input type="hidden" name="csrf" value=csrf.clone()/>
                                    <input type="hidden" name="version" value=version.clone()/>
                                    <button type="submit">{format!("Upgrade to {version}")}</button>
                                </form>
                            }
                        });
                        view! { <li>{version.clone()}" (skew checks pass) "{button}</li> }
                            .into_any()
                    }
                }
            })
            .collect_view()
            .into_any()
    };
    let steps = plan
        .steps
        .iter()
        .map(|step| view! { <li>{step.clone()}</li> })
        .collect_view();
    let current = format!("The cluster runs Kubernetes {}.", plan.current);
    view! {
        <h1>"Upgrades"</h1>
        <p>{current}</p>
        {resume}
        <table><thead><tr><th scope="col">"Node"</th><th scope="col">"kubelet"</th></tr></thead><tbody>{nodes}</tbody></table>
        <h2>"Available versions"</h2>
        <ul>{candidates}</ul>
        <h2>"What an upgrade does, in order"</h2>
        <ol>{steps}</ol>
    }
    .into_any()
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

/// One operation: its log so far, then (in the browser) its live lines and how it ends.
pub fn operation(op: Operation, lines: Vec<LogLine>) -> AnyView {
    let heading = format!("#{} {} on {}", op.id, op.kind, op.target);
    let events = format!("/operations/{}/events", op.id);
    let started = format!("Started {} by {}.", when(op.started), op.user);
    view! {
        <h1>{heading}</h1>
        <p>{started}</p>
        <OperationLog events=events status=op.result lines=lines/>
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
    let csrf = csrf.to_owned();
    let rows = users
        .into_iter()
        .map(|u| {
            let action = format!("/users/{}/role", u.name);
            let label = format!("Role of {}", u.name);
            let options = [Role::Viewer, Role::Operator, Role::Admin]
                .into_iter()
                .map(|r| view! { <option value=r.as_str() selected=r == u.role>{r.as_str()}</option> })
                .collect_view();
            view! {
                <tr><th scope="row">{u.name}</th><td>{u.role.as_str()}</td>
                <td><form method="post" action=action class="inline">
                    <input type="hidden" name="csrf" value=csrf.clone()/>
                    <select name="role" aria-label=label>{options}</select>
                    <button type="submit">"Change"</button>
                </form></td></tr>
            }
        })
        .collect_view();
    view! {
        <h1>"Users"</h1>
        {problem(error)}
        <table>
            <thead><tr><th scope="col">"Name"</th><th scope="col">"Role"</th><th scope="col">"Change the role"</th></tr></thead>
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
