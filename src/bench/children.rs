//! The worker processes a bench starts (this executable, `campuspay run` or `bench
//! --chain-worker`): spawning them, waiting until their consumers are up, stopping them.

use super::env::close;
use super::{fail, BenchError};
use campuspay::broker::connection::connect_retrying;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Child processes that are asked to stop (SIGTERM) and killed if they do not.
pub(super) struct Children {
    pub(super) procs: Vec<Child>,
}

impl Children {
    /// Starts one more child: this executable with `args` and `envs`, stderr to `log`.
    pub(super) fn spawn(
        &mut self,
        args: &[&str],
        envs: &[(&str, &str)],
        log: &Path,
    ) -> Result<(), BenchError> {
        let exe = std::env::current_exe().map_err(fail)?;
        let file =
            std::fs::File::create(log).map_err(|e| fail(format!("{}: {e}", log.display())))?;
        let mut cmd = Command::new(&exe);
        cmd.args(args).stdout(Stdio::null()).stderr(file);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        self.procs.push(cmd.spawn().map_err(fail)?);
        eprintln!(
            "[bench] started {} {} (log {})",
            exe.display(),
            args.join(" "),
            log.display()
        );
        Ok(())
    }

    pub(super) fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|c| c.id()).collect()
    }

    pub(super) fn any_exited(&mut self) -> Option<String> {
        self.procs.iter_mut().find_map(|c| match c.try_wait() {
            Ok(Some(status)) => Some(format!("process {} exited: {status}", c.id())),
            _ => None,
        })
    }

    /// SIGTERM, then up to `grace` for a graceful exit, then SIGKILL.
    pub(super) fn stop(&mut self, grace: Duration) {
        for c in &self.procs {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + grace;
        for c in &mut self.procs {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
        self.procs.clear();
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A free local TCP address for a worker's HTTP server (bound and released at once).
pub(super) fn free_local_addr() -> Result<String, BenchError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(fail)?;
    Ok(l.local_addr().map_err(fail)?.to_string())
}

/// Waits until every queue has a consumer (the workers are up).
pub(super) async fn wait_consumers(
    amqp_url: &str,
    queues: &[String],
    children: &mut Children,
    interrupted: &watch::Receiver<bool>,
) -> Result<(), BenchError> {
    let conn = connect_retrying(amqp_url, "campuspay bench probe", 5).await?;
    let ch = conn.create_channel().await?;
    let started = Instant::now();
    loop {
        let mut missing = Vec::new();
        for q in queues {
            let declared = ch
                .queue_declare(
                    q.as_str().into(),
                    lapin::options::QueueDeclareOptions {
                        passive: true,
                        durable: true,
                        ..Default::default()
                    },
                    lapin::types::FieldTable::default(),
                )
                .await?;
            if declared.consumer_count() == 0 {
                missing.push(q.clone());
            }
        }
        if missing.is_empty() {
            close(conn, &[ch]).await;
            return Ok(());
        }
        if let Some(why) = children.any_exited() {
            return Err(fail(format!("worker died before it was ready: {why}")));
        }
        if *interrupted.borrow() {
            return Err(fail("interrupted"));
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(fail(format!("no consumer on {missing:?} after 60 s")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
