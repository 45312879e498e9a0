//! The operator's dashboard at `/ui` on the client URLs: one page, no build step, served by
//! the member itself. It works through the JSON gateway and /metrics as the signed-in user
//! (or the browser's client certificate), so RBAC applies to it as to any client. `--ui`
//! turns it off, or makes it read-only (no member actions).

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

const PAGE: &str = include_str!("ui/index.html");

/// `--ui`: on (the default), read-only, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    On,
    ReadOnly,
    Off,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "on" | "true" => Some(Mode::On),
            "read-only" => Some(Mode::ReadOnly),
            "off" | "false" => Some(Mode::Off),
            _ => None,
        }
    }
}

pub fn routes(mode: Mode) -> axum::Router {
    if mode == Mode::Off {
        return axum::Router::new();
    }
    let page = PAGE.replace(
        "__OXCD_UI_MODE__",
        if mode == Mode::ReadOnly {
            "read-only"
        } else {
            "on"
        },
    );
    let serve = move || {
        let page = page.clone();
        // Its buttons act on the cluster: no other site may frame it.
        let headers = [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
        ];
        async move { (headers, Html(page)).into_response() }
    };
    axum::Router::new().route("/ui/", get(serve)).route(
        "/ui",
        get(|| async { axum::response::Redirect::permanent("/ui/") }),
    )
}
