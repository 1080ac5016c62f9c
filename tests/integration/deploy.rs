//! The deployment files under deploy/ pass their own tools and agree with the code: the
//! alerting rules pass `promtool check rules` and their unit tests (`promtool test rules`), the
//! example Prometheus config `promtool check config`; every query of the Grafana dashboard is
//! valid PromQL; every metric the rules and the dashboard use is one campuspay or RabbitMQ's
//! Prometheus plugin really exports; the systemd units pass `systemd-analyze verify` (where
//! systemd is installed) and keep their sandbox; the example environment file names every
//! variable of the README's configuration table and leaves the secrets empty; and Cargo.toml's
//! `rust-version` is the newest one a locked dependency declares.
//!
//! Needs promtool (Debian's `prometheus` package; scripts/ensure-services.sh installs it) and,
//! for the metric names, RabbitMQ's rabbitmq_prometheus plugin on 127.0.0.1:15692
//! (`RABBITMQ_PROMETHEUS_URL` to look elsewhere).

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let p = root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Runs a tool and returns its output; a tool that is not installed is a failure that says
/// how to get it.
fn run(tool: &str, args: &[&str], cwd: &Path) -> (bool, String) {
    let out = Command::new(tool)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{tool}: {e} (scripts/ensure-services.sh installs it: Debian's prometheus package)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn promtool(args: &[&str]) -> String {
    let (ok, text) = run("promtool", args, &root().join("deploy/prometheus"));
    assert!(ok, "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_alerting_rules_pass_promtool_and_their_unit_tests() {
    let checked = promtool(&["check", "rules", "campuspay.rules.yml"]);
    assert!(checked.contains("SUCCESS: 7 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "campuspay.rules.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    let config = promtool(&["check", "config", "prometheus.yml"]);
    assert!(
        config.contains("is valid prometheus config file"),
        "{config}"
    );
    // Every alert has a unit test.
    let rules = read("deploy/prometheus/campuspay.rules.yml");
    let tests = read("deploy/prometheus/campuspay.rules.test.yml");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 6, "{alerts:?}");
    for a in alerts {
        assert!(
            tests.contains(&format!("alertname: {a}\n")),
            "{a} has no unit test in campuspay.rules.test.yml"
        );
    }
}

fn dashboard() -> Value {
    serde_json::from_str(&read("deploy/grafana/campuspay.json")).expect("the dashboard is JSON")
}

/// Every PromQL query of the dashboard (panels and template variables), with Grafana's
/// variables replaced by values Prometheus understands.
fn dashboard_queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("a PromQL expr");
            out.push((format!("panel {} {}", p["id"], t["refId"]), expr.to_owned()));
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            // label_values(metric, label) is Grafana's: check the metric selector.
            let q = v["definition"].as_str().unwrap();
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.split(',').next())
                .unwrap_or(q);
            out.push((format!("variable {}", v["name"]), inner.to_owned()));
        }
    }
    out.into_iter()
        .map(|(at, e)| {
            let e = e.replace("$__rate_interval", "1m").replace("$vhost", ".*");
            (at, e)
        })
        .collect()
}

#[test]
fn every_dashboard_query_is_valid_promql_and_every_panel_is_complete() {
    let d = dashboard();
    assert_eq!(d["uid"], "campuspay");
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate id {}",
            p["id"]
        );
        assert!(
            p["gridPos"]["w"].as_u64().is_some(),
            "{} has no gridPos",
            p["id"]
        );
        if p["type"] == "row" {
            continue;
        }
        assert!(p["title"].is_string() && p["description"].is_string());
        assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {}", p["id"]);
        assert!(
            !p["targets"].as_array().unwrap().is_empty(),
            "panel {}",
            p["id"]
        );
    }
    // promtool parses PromQL when it checks rules: each query becomes a recording rule.
    let queries = dashboard_queries(&d);
    assert!(queries.len() >= 15, "{queries:?}");
    let mut yaml = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (at, e)) in queries.iter().enumerate() {
        // A JSON string is a valid YAML double-quoted scalar.
        yaml.push_str(&format!(
            "      # {at}\n      - record: dashboard_query_{i}\n        expr: {}\n",
            serde_json::to_string(e).unwrap()
        ));
    }
    let dir = std::env::temp_dir().join(format!("campuspay-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("dashboard.rules.yml");
    std::fs::write(&file, &yaml).unwrap();
    let (ok, text) = run(
        "promtool",
        &["check", "rules", file.to_str().unwrap()],
        &dir,
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(ok, "the dashboard's queries:\n{text}\n{yaml}");
}

/// Tokens of `text` that look like metric names of `prefix` (`campuspay_…`, `rabbitmq_…`).
fn names(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    out
}

/// Metric names of a Prometheus exposition: the `# TYPE` lines (a histogram adds its series).
fn exported(exposition: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for l in exposition.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            out.insert(name.to_owned());
            if kind == "histogram" {
                for s in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{s}"));
                }
            }
        }
    }
    out
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_use_is_exported() {
    // The rules without their comments (which may name things that are not metrics), the
    // annotations included: they point operators at metrics too.
    let rules: String = read("deploy/prometheus/campuspay.rules.yml")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let queries: String = dashboard_queries(&dashboard())
        .into_iter()
        .map(|(_, e)| e)
        .collect::<Vec<_>>()
        .join("\n");
    let used = format!("{rules}\n{queries}");

    // campuspay's: what the operations listener renders.
    let ours = exported(&campuspay::metrics::render());
    let wanted = names(&used, "campuspay_");
    assert!(wanted.len() >= 5, "{wanted:?}");
    let unknown: Vec<_> = wanted.difference(&ours).collect();
    assert!(
        unknown.is_empty(),
        "not exported by campuspay: {unknown:?} (it has {ours:?})"
    );

    // RabbitMQ's: what the plugin of the broker the tests use serves (the plugin's name is
    // the one rabbitmq_ word that is no metric).
    let url = std::env::var("RABBITMQ_PROMETHEUS_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:15692".into());
    let text = ureq::get(&format!("{url}/metrics/per-object"))
        .call()
        .unwrap_or_else(|e| {
            panic!("{url}/metrics/per-object: {e} (rabbitmq-plugins enable rabbitmq_prometheus)")
        })
        .into_string()
        .unwrap();
    let theirs = exported(&text);
    let mut wanted = names(&used, "rabbitmq_");
    wanted.remove("rabbitmq_prometheus");
    assert!(wanted.len() >= 3, "{wanted:?}");
    let unknown: Vec<_> = wanted.difference(&theirs).collect();
    assert!(
        unknown.is_empty(),
        "not exported by rabbitmq_prometheus: {unknown:?}"
    );
}

const UNITS: [&str; 3] = [
    "campuspay-setup.service",
    "campuspay-platform.service",
    "campuspay-worker@.service",
];

#[test]
fn the_systemd_units_keep_their_sandbox_and_pass_systemd_analyze_verify() {
    for unit in UNITS {
        let text = read(&format!("deploy/systemd/{unit}"));
        for line in [
            "DynamicUser=yes",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "PrivateDevices=yes",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
            "CapabilityBoundingSet=",
            "SystemCallFilter=@system-service",
            "EnvironmentFile=/etc/campuspay/campuspay.env",
        ] {
            assert!(text.lines().any(|l| l == line), "{unit} lacks `{line}`");
        }
    }
    let worker = read("deploy/systemd/campuspay-worker@.service");
    assert!(worker.contains(
        "ExecStart=/usr/local/bin/campuspay run --no-http --stages ${WORKER_STAGES} $WORKER_ARGS"
    ));
    assert!(worker.contains("EnvironmentFile=/etc/campuspay/worker-%i.env"));

    // systemd-analyze checks what systemd itself would refuse or ignore (unknown keys, bad
    // values, missing dependencies) and that ExecStart runs something: point it at the binary
    // this test run built. It prints warnings without failing: any output is a failure here.
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed: skipping `systemd-analyze verify`");
        return;
    }
    let dir = std::env::temp_dir().join(format!("campuspay-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for unit in UNITS {
        let text = read(&format!("deploy/systemd/{unit}"))
            .replace("/usr/local/bin/campuspay", env!("CARGO_BIN_EXE_campuspay"));
        std::fs::write(dir.join(unit), text).unwrap();
    }
    let (ok, text) = run(
        "systemd-analyze",
        &[
            "verify",
            "--man=no",
            "campuspay-setup.service",
            "campuspay-platform.service",
            "campuspay-worker@a.service",
        ],
        &dir,
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        ok && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );
}

/// The variables of the README's configuration table.
fn readme_variables() -> BTreeSet<String> {
    let readme = read("README.md");
    let table = readme
        .split("\n## Configuration\n")
        .nth(1)
        .expect("a Configuration section")
        .split("\n#")
        .next()
        .unwrap();
    table
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(v, _)| v.to_owned())
        .collect()
}

#[test]
fn the_example_environment_names_every_setting_and_no_secret() {
    let table = readme_variables();
    assert!(table.contains("CAMPUSPAY_CODE_PREFIX"), "{table:?}");
    // Everything config.rs reads is in the table.
    let config = read("src/config.rs");
    for name in names(&config, "CAMPUSPAY_")
        .into_iter()
        .chain(["DATABASE_URL", "AMQP_URL", "RABBITMQ_MANAGEMENT_URL"].map(String::from))
    {
        if config.contains(&format!("\"{name}\"")) {
            assert!(
                table.contains(&name),
                "{name} is read by config.rs but not in README.md"
            );
        }
    }
    // The example sets (or, for the tools' own, mentions) each of them, and nothing else.
    let example = read("deploy/systemd/campuspay.env.example");
    let mut set = BTreeSet::new();
    for l in example.lines() {
        let l = l.trim();
        let l = l.strip_prefix("# ").unwrap_or(l);
        if let Some((name, value)) = l.split_once('=') {
            if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !name.is_empty() {
                set.insert(name.to_owned());
                if name.ends_with("_SECRET") || name.ends_with("_KEY") {
                    assert_eq!(value, "", "{name} must be left empty in the example");
                }
                if name == "CAMPUSPAY_ENV" {
                    assert_eq!(value, "production");
                }
            }
        }
    }
    assert_eq!(
        set, table,
        "campuspay.env.example vs README.md's configuration table"
    );
}

/// `1.95` → (1, 95, 0).
fn version(v: &str) -> (u32, u32, u32) {
    let mut n = v.split('.').map(|p| p.parse::<u32>().unwrap());
    (
        n.next().unwrap(),
        n.next().unwrap_or(0),
        n.next().unwrap_or(0),
    )
}

#[test]
fn the_declared_rust_version_is_the_newest_one_a_locked_dependency_needs() {
    // `cargo metadata` reads every locked package's manifest (offline: they are downloaded).
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let ours = packages
        .iter()
        .find(|p| p["name"] == "campuspay" && p["source"].is_null())
        .and_then(|p| p["rust_version"].as_str())
        .expect("campuspay declares a rust-version");
    let (newest, who) = packages
        .iter()
        .filter(|p| !p["source"].is_null())
        .filter_map(|p| {
            let v = p["rust_version"].as_str()?;
            Some((version(v), format!("{} {}", p["name"], p["version"])))
        })
        .max()
        .expect("dependencies with a rust-version");
    assert!(packages.len() > 100, "only {} packages", packages.len());
    assert_eq!(
        version(ours),
        newest,
        "Cargo.toml says rust-version {ours}, but the newest a locked dependency needs is \
         {newest:?} ({who})"
    );
}
