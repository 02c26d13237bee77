//! The console's interactive parts, as Leptos islands: the server renders them into the page
//! like everything else, and the browser hydrates only these from a small wasm module, so the
//! rest of each page stays plain HTML that works without it.

use leptos::prelude::*;

/// A line of an operation's log, numbered as the database numbers it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    pub seq: i64,
    pub text: String,
}

/// An operation's log and status. The page brings the lines written so far; the browser then
/// follows the operation's event stream from the last of them, so a reload neither misses
/// nor repeats a line, and shows how the operation ended.
#[island]
pub fn OperationLog(events: String, status: String, lines: Vec<LogLine>) -> impl IntoView {
    let status = RwSignal::new(status);
    let lines = RwSignal::new(lines);
    #[cfg(feature = "hydrate")]
    follow(&events, status, lines);
    #[cfg(not(feature = "hydrate"))]
    let _ = events;
    view! {
        <p class="status-line">
            "Status: "
            <strong id="status" role="status" class=move || status.get()>{move || status.get()}</strong>
        </p>
        <ol id="log" class="log" aria-live="polite">
            <For
                each=move || lines.get()
                key=|line| line.seq
                children=|line: LogLine| view! { <li data-seq=line.seq.to_string()>{line.text}</li> }
            />
        </ol>
    }
}

#[cfg(feature = "hydrate")]
fn follow(events: &str, status: RwSignal<String>, lines: RwSignal<Vec<LogLine>>) {
    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;
    if status.get_untracked() != "running" {
        return;
    }
    let after = lines.with_untracked(|lines| lines.last().map_or(0, |l| l.seq));
    // The browser reconnects by itself after a network error, sending the last line's id.
    let Ok(source) = web_sys::EventSource::new(&format!("{events}?after={after}")) else {
        status.set("running (reload the page to follow it)".into());
        return;
    };
    let on_line =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
            let seq: i64 = event.last_event_id().parse().unwrap_or(0);
            let text = event.data().as_string().unwrap_or_default();
            lines.update(|lines| {
                if lines.last().is_none_or(|last| last.seq < seq) {
                    lines.push(LogLine { seq, text });
                }
            });
        });
    source.set_onmessage(Some(on_line.as_ref().unchecked_ref()));
    // The page lives as long as the stream; the closures must too.
    on_line.forget();
    let closing = source.clone();
    let on_end =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
            closing.close();
            status.set(event.data().as_string().unwrap_or_default());
        });
    let _ = source.add_event_listener_with_callback("end", on_end.as_ref().unchecked_ref());
    on_end.forget();
}

/// The submit button of an action that cannot be undone: enabled once `word` is typed.
/// The server checks the word again; this only saves a round trip and a slip of the mouse.
#[island]
pub fn ConfirmAction(word: String, button: String) -> impl IntoView {
    let typed = RwSignal::new(String::new());
    let prompt = format!("Type {word} to confirm ");
    view! {
        <label>
            {prompt}
            <input name="confirm" required autocomplete="off" on:input=move |event| typed.set(event_target_value(&event))/>
        </label>
        <button type="submit" class="danger" disabled=move || typed.get().trim() != word>{button}</button>
    }
}

/// Called by the page's loader once the module is instantiated: hydrates every island.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_islands();
}
