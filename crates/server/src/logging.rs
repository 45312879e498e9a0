//! Logs as etcd's zap logger writes them: one JSON object a line with `level`, `ts`, `caller`,
//! `msg` and the event's fields, on stderr.

use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

struct ZapJson;

#[derive(Default)]
struct Fields {
    msg: String,
    rest: serde_json::Map<String, serde_json::Value>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            self.rest
                .insert(field.name().replace('_', "-"), value.into());
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.rest
            .insert(field.name().replace('_', "-"), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.rest
            .insert(field.name().replace('_', "-"), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.rest
            .insert(field.name().replace('_', "-"), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.msg = text;
        } else {
            self.rest
                .insert(field.name().replace('_', "-"), text.into());
        }
    }
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG | Level::TRACE => "debug",
    }
}

impl<S, N> FormatEvent<S, N> for ZapJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let ts = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let caller = match (meta.file(), meta.line()) {
            (Some(f), Some(l)) => format!("{}:{l}", f.rsplit_once("src/").map_or(f, |(_, p)| p)),
            _ => meta.target().to_string(),
        };
        let mut obj = serde_json::Map::new();
        obj.insert("level".into(), level_name(meta.level()).into());
        obj.insert("ts".into(), ts.into());
        obj.insert("caller".into(), caller.into());
        obj.insert("msg".into(), fields.msg.into());
        obj.extend(fields.rest);
        writeln!(w, "{}", serde_json::Value::Object(obj))
    }
}

/// etcd's --log-level names mapped onto tracing's levels.
pub fn init(level: &str) {
    let max = match level {
        "debug" => Level::DEBUG,
        "info" => Level::INFO,
        "warn" => Level::WARN,
        _ => Level::ERROR,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(max)
        .with_writer(std::io::stderr)
        .event_format(ZapJson)
        .try_init();
}

/// raft-rs logs through slog; this drain hands its records to tracing.
pub struct SlogToTracing;

impl slog::Drain for SlogToTracing {
    type Ok = ();
    type Err = slog::Never;
    fn log(
        &self,
        record: &slog::Record<'_>,
        _values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        let msg = record.msg().to_string();
        match record.level() {
            slog::Level::Critical | slog::Level::Error => tracing::error!(target: "raft", "{msg}"),
            slog::Level::Warning => tracing::warn!(target: "raft", "{msg}"),
            slog::Level::Info => tracing::info!(target: "raft", "{msg}"),
            _ => tracing::debug!(target: "raft", "{msg}"),
        }
        Ok(())
    }
}

pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(SlogToTracing, slog::o!())
}
