//! The process's log: env_logger filtered by `RUST_LOG`, as text (the default) or, with
//! `CAMPUSPAY_LOG_FORMAT=json`, one JSON object per line for a log shipper: `ts`, `level`,
//! `target`, `msg`, and the line's fields (`request_id`, `transaction_id`, `stage`, …).

use serde_json::{Map, Value};
use std::io::Write;

/// The filter when `RUST_LOG` is unset: lapin's and tracing's chatter only when it matters.
const DEFAULT_FILTER: &str = "info,tracing::span=warn,lapin=warn";
/// The filter for `campuspay demo`: warnings only from the parts that log each payment or
/// request (the stages, the platform and its access log, the consumers). The demo tells its own
/// story on stdout, and a lunch hour's thousands of lines would bury it.
const DEMO_FILTER: &str = "info,tracing::span=warn,lapin=warn,actix_server=warn,\
campuspay::pipeline=warn,campuspay::platform=warn,campuspay::access=warn,\
campuspay::broker::consumer=warn";

/// Installs the logger (`demo`: the filter for `campuspay demo` when `RUST_LOG` is unset). An
/// unknown `CAMPUSPAY_LOG_FORMAT` is reported (in text) and ignored rather than refused: a typo
/// must not keep a payment service from starting.
pub fn init(demo: bool) {
    let default = if demo { DEMO_FILTER } else { DEFAULT_FILTER };
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default));
    let format = std::env::var("CAMPUSPAY_LOG_FORMAT").unwrap_or_default();
    let json = format.trim().eq_ignore_ascii_case("json");
    let unknown = !json && !format.trim().is_empty() && !format.trim().eq_ignore_ascii_case("text");
    if json {
        builder.format(|buf, record| {
            let mut line = Map::new();
            line.insert(
                "ts".into(),
                chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                    .into(),
            );
            line.insert("level".into(), record.level().as_str().into());
            line.insert("target".into(), record.target().into());
            line.insert("msg".into(), record.args().to_string().into());
            let _ = record.key_values().visit(&mut Fields(&mut line));
            writeln!(buf, "{}", Value::Object(line))
        });
    }
    builder.init();
    if unknown {
        log::warn!("CAMPUSPAY_LOG_FORMAT={format:?} is neither text nor json; logging text");
    }
}

/// Copies a record's key-values into the JSON line (as strings: ids, names, counts).
struct Fields<'a>(&'a mut Map<String, Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        // The four members of every line are not overwritten by a field of the same name.
        if !matches!(key.as_str(), "ts" | "level" | "target" | "msg") {
            self.0.insert(key.to_string(), value.to_string().into());
        }
        Ok(())
    }
}
