//! A headless Chromium for the browser tests, driven through chromedriver with a small
//! WebDriver client over ureq (the one HTTP client the project has already: a WebDriver crate
//! would bring hyper 1, http 1, a second cookie and thiserror and icu 1.5 into the test build,
//! 40 crates, for the dozen calls used here).
//!
//! Each `Browser` runs its own chromedriver (a free port, its own process group) and Chromium
//! (a profile of its own in a temporary directory); dropping it, also when a test panics,
//! ends the session and kills the process group, and removes the profile. At most
//! `CAMPUSPAY_BROWSERS` (default 2) browsers run at once in the test binary: they share two
//! cores with the other tests.
//!
//! When Chromium or chromedriver is missing the tests print `SKIPPED` and pass, unless
//! `CAMPUSPAY_REQUIRE_BROWSER` is set (the Makefile's `test` sets it): then they fail.
//! `scripts/ensure-services.sh` installs both.
//!
//! Every call blocks (ureq); the async wrappers run it on the blocking pool, so the test's own
//! runtime, which also drives the platform's result hub and the pipeline, never stalls.

use base64::Engine;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The element reference key of the W3C WebDriver protocol.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// The phone the pages are shown on: the narrowest width the wallet lays out for.
pub const WIDTH: u32 = 360;
pub const HEIGHT: u32 = 740;
/// How long a page may take to show what a test waits for.
pub const PAGE_WAIT: Duration = Duration::from_secs(20);

/// Browsers running at once in this test binary.
static RUNNING: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

fn limit() -> usize {
    std::env::var("CAMPUSPAY_BROWSERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(2)
}

/// Holds one of the `limit()` places while alive.
struct Slot;

impl Slot {
    fn take() -> Slot {
        let (lock, cv) = &RUNNING;
        let mut n = lock.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= limit() {
            n = cv.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (lock, cv) = &RUNNING;
        let mut n = lock.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        cv.notify_one();
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// chromedriver and the Chromium binary (the real one: Debian's /usr/bin/chromium is a shell
/// wrapper), from `CAMPUSPAY_CHROMEDRIVER` / `CAMPUSPAY_CHROMIUM` or the usual places.
fn tools() -> Result<(PathBuf, PathBuf), String> {
    let named = |var: &str| std::env::var_os(var).map(PathBuf::from);
    let driver = match named("CAMPUSPAY_CHROMEDRIVER") {
        Some(p) if p.is_file() => p,
        Some(p) => return Err(format!("CAMPUSPAY_CHROMEDRIVER={} is no file", p.display())),
        None => on_path("chromedriver")
            .ok_or("chromedriver not found (apt-get install chromium-driver)")?,
    };
    if let Some(p) = named("CAMPUSPAY_CHROMIUM").filter(|p| !p.is_file()) {
        return Err(format!("CAMPUSPAY_CHROMIUM={} is no file", p.display()));
    }
    let chromium = named("CAMPUSPAY_CHROMIUM")
        .or_else(|| {
            ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        })
        .or_else(|| on_path("chromium"))
        .or_else(|| on_path("google-chrome"))
        .ok_or("chromium not found (apt-get install chromium)")?;
    Ok((driver, chromium))
}

fn required() -> bool {
    std::env::var("CAMPUSPAY_REQUIRE_BROWSER").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// What the browser is started with.
#[derive(Default)]
pub struct Options {
    /// A .y4m file Chromium plays as the camera (and grants the camera without asking).
    pub fake_camera: Option<PathBuf>,
    /// A desktop window (the console) instead of the phone the wallet is shown on.
    pub desktop: bool,
    /// A desktop-like window of this width and height (a till's tablet or PC) instead of the
    /// phone's WIDTH × HEIGHT.
    pub window: Option<(u32, u32)>,
}

/// The desktop window of `Options::desktop`.
pub const DESKTOP: (u32, u32) = (1280, 900);

struct Inner {
    base: String,
    session: String,
    agent: ureq::Agent,
    driver: Child,
    profile: PathBuf,
    _slot: Slot,
}

impl Inner {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        call(&self.agent, method, &url, body)
    }
}

fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let req = agent.request(method, url);
    let resp = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    let text = match resp {
        Ok(r) => r.into_string().map_err(|e| e.to_string())?,
        Err(ureq::Error::Status(code, r)) => {
            let body = r.into_string().unwrap_or_default();
            return Err(format!("{method} {url}: {code} {body}"));
        }
        Err(e) => return Err(format!("{method} {url}: {e}")),
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{url}: {e}: {text}"))?;
    Ok(v["value"].clone())
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Chromium first (chromedriver ends it and its helpers), then whatever is left of the
        // process group, then the profile. Never panics.
        let _ = self.call("DELETE", "", None);
        let pgid = self.driver.id().to_string();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn launch_blocking(opts: Options) -> Inner {
    let (driver_bin, chromium) = tools().expect("browser tools");
    let slot = Slot::take();
    let port = free_port();
    let mut cmd = Command::new(&driver_bin);
    cmd.arg(format!("--port={port}"))
        // The page writes times in the phone's zone: a campus phone's, as on the sign-in page.
        .env("TZ", "Asia/Shanghai")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Its own process group: the drop kills chromedriver and every Chromium process at once.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let driver = cmd.spawn().expect("chromedriver starts");
    let base = format!("http://127.0.0.1:{port}");
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let profile = std::env::temp_dir().join(format!(
        "campuspay-chromium-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut inner = Inner {
        base: base.clone(),
        session: String::new(),
        agent: agent.clone(),
        driver,
        profile: profile.clone(),
        _slot: slot,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while call(&agent, "GET", &format!("{base}/status"), None)
        .map(|v| v["ready"] != json!(true))
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "chromedriver did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut args = vec![
        "--headless=new".to_string(),
        // Chromium refuses to sandbox as root (CI runs as root).
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--no-first-run".into(),
        "--no-default-browser-check".into(),
        "--disable-extensions".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--password-store=basic".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    if let Some(y4m) = &opts.fake_camera {
        args.push("--use-fake-device-for-media-stream".into());
        args.push("--use-fake-ui-for-media-stream".into());
        args.push(format!(
            "--use-file-for-fake-video-capture={}",
            y4m.display()
        ));
    }
    let metrics = match opts.window {
        Some((w, h)) => {
            json!({"width": w, "height": h, "pixelRatio": 1, "touch": true, "mobile": false})
        }
        None => json!({
            "width": WIDTH, "height": HEIGHT, "pixelRatio": 1, "touch": true, "mobile": true
        }),
    };
    let mut chrome = json!({
        "binary": chromium,
        "mobileEmulation": {"deviceMetrics": metrics},
    });
    if opts.desktop {
        args.push(format!("--window-size={},{}", DESKTOP.0, DESKTOP.1));
        chrome = json!({ "binary": chromium });
    }
    chrome["args"] = json!(args);
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": chrome,
    }}});
    let created = call(&agent, "POST", &format!("{base}/session"), Some(caps))
        .unwrap_or_else(|e| panic!("a browser session: {e}"));
    inner.session = created["sessionId"]
        .as_str()
        .expect("a session id")
        .to_owned();
    inner
}

/// A headless Chromium in a phone-sized window.
#[derive(Clone)]
pub struct Browser(Arc<Inner>);

impl Browser {
    /// A browser, or `None` (and a `SKIPPED` line) when Chromium or chromedriver is missing and
    /// not required.
    pub async fn launch(test: &str, opts: Options) -> Option<Browser> {
        if let Err(why) = tools() {
            assert!(
                !required(),
                "{test}: CAMPUSPAY_REQUIRE_BROWSER is set but {why}"
            );
            eprintln!("SKIPPED {test}: {why}");
            return None;
        }
        let inner = tokio::task::spawn_blocking(move || launch_blocking(opts))
            .await
            .expect("launching the browser");
        Some(Browser(Arc::new(inner)))
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| e.to_string())?
    }

    pub async fn goto(&self, url: &str) {
        let url = url.to_owned();
        self.run(move |b| b.call("POST", "/url", Some(json!({ "url": url }))))
            .await
            .unwrap_or_else(|e| panic!("navigate: {e}"));
    }

    pub async fn reload(&self) {
        self.run(|b| b.call("POST", "/refresh", Some(json!({}))))
            .await
            .unwrap_or_else(|e| panic!("reload: {e}"));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page; its return value.
    pub async fn js(&self, script: &str, args: Value) -> Value {
        let body = json!({"script": script, "args": args});
        self.run(move |b| b.call("POST", "/execute/sync", Some(body)))
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    /// The page's value of `script` once it is truthy (polled every 100 ms, for at most
    /// PAGE_WAIT); panics with `what` and the last value otherwise.
    pub async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let v = self.js(script, json!([])).await;
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!("") && v != json!(0);
            if truthy {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {PAGE_WAIT:?}; last seen {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the first element matching `css` ("" if none or hidden).
    pub async fn text(&self, css: &str) -> String {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
            json!([css]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Whether an element matching `css` is on the page and not hidden.
    pub async fn visible(&self, css: &str) -> bool {
        self.js(
            "const e = document.querySelector(arguments[0]); \
             return !!e && !e.closest('[hidden]') && e.getClientRects().length > 0;",
            json!([css]),
        )
        .await
            == json!(true)
    }

    async fn element(&self, css: &str) -> String {
        let body = json!({"using": "css selector", "value": css});
        let found = self
            .run(move |b| b.call("POST", "/element", Some(body)))
            .await
            .unwrap_or_else(|e| panic!("no element {e}"));
        found[ELEMENT].as_str().expect("an element id").to_owned()
    }

    /// Clicks like a finger would (WebDriver scrolls it into view first).
    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        let css = css.to_owned();
        self.run(move |b| b.call("POST", &format!("/element/{id}/click"), Some(json!({}))))
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Types `text` into the input matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        let body = json!({ "text": text });
        self.run(move |b| b.call("POST", &format!("/element/{id}/value"), Some(body)))
            .await
            .unwrap_or_else(|e| panic!("type: {e}"));
    }

    /// Presses the keys of `text` on whatever has the focus (the page itself when nothing was
    /// clicked), one after the other without pauses, as a keyboard-wedge scanner types; `\n`
    /// is Enter.
    pub async fn keys(&self, text: &str) {
        let mut actions = Vec::new();
        for c in text.chars() {
            let key = if c == '\n' {
                "\u{E007}".to_owned()
            } else {
                c.to_string()
            };
            actions.push(json!({"type": "keyDown", "value": key}));
            actions.push(json!({"type": "keyUp", "value": key}));
        }
        let body = json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]});
        self.run(move |b| b.call("POST", "/actions", Some(body)))
            .await
            .unwrap_or_else(|e| panic!("keys: {e}"));
    }

    /// A PNG of the whole window.
    pub async fn screenshot(&self) -> Vec<u8> {
        let b64 = self
            .run(|b| b.call("GET", "/screenshot", None))
            .await
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        decode_b64(&b64)
    }

    /// A PNG of one element.
    pub async fn element_png(&self, css: &str) -> Vec<u8> {
        let id = self.element(css).await;
        let b64 = self
            .run(move |b| b.call("GET", &format!("/element/{id}/screenshot"), None))
            .await
            .unwrap_or_else(|e| panic!("element screenshot: {e}"));
        decode_b64(&b64)
    }

    /// Switches the browser's network off or on (chromedriver's network emulation: every new
    /// request of the page fails as when the phone has no signal).
    pub async fn set_offline(&self, offline: bool) {
        let body = json!({"network_conditions": {
            "offline": offline, "latency": 0,
            "download_throughput": 10_000_000, "upload_throughput": 10_000_000
        }});
        self.run(move |b| b.call("POST", "/chromium/network_conditions", Some(body)))
            .await
            .unwrap_or_else(|e| panic!("network conditions: {e}"));
    }

    /// Saves a screenshot as `docs/img/<name>.png`-style documentation when
    /// `CAMPUSPAY_SCREENSHOTS` names a directory (how the README's pictures are made).
    pub async fn document(&self, name: &str) {
        let Some(dir) = std::env::var_os("CAMPUSPAY_SCREENSHOTS") else {
            return;
        };
        // Let transitions and fonts settle.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let png = self.screenshot().await;
        let path = Path::new(&dir).join(format!("{name}.png"));
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        std::fs::write(&path, png).expect("screenshot written");
    }
}

fn decode_b64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("base64 text"))
        .expect("base64")
}

/// The text of the QR code in a PNG (a screenshot), read with rqrr.
pub fn read_qr(png_bytes: &[u8]) -> Option<String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().ok()?;
    let mut buf = vec![0; reader.output_buffer_size()?];
    let info = reader.next_frame(&mut buf).ok()?;
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples();
    let luma: Vec<u8> = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| match p {
            [g] | [g, _] => *g,
            [r, g, b, ..] => ((*r as u32 * 299 + *g as u32 * 587 + *b as u32 * 114) / 1000) as u8,
            [] => 255,
        })
        .collect();
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| luma[y * w + x]);
    img.detect_grids()
        .into_iter()
        .find_map(|g| g.decode().ok().map(|(_, text)| text))
}

/// Converts a still image to a short .y4m video (what Chromium's fake camera plays), the image
/// centred on white at 640×480.
pub fn y4m_of(png: &Path, out: &Path) {
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-loop", "1", "-i"])
        .arg(png)
        .args([
            "-t",
            "1",
            "-r",
            "10",
            "-vf",
            "scale=400:400:flags=neighbor,pad=640:480:(ow-iw)/2:(oh-ih)/2:white,format=yuv420p",
            "-f",
            "yuv4mpegpipe",
        ])
        .arg(out)
        .stdin(Stdio::null())
        .status()
        .expect("ffmpeg runs (apt-get install ffmpeg)");
    assert!(
        status.success(),
        "ffmpeg made no video of {}",
        png.display()
    );
}

/// Whether ffmpeg is there (the forward-scan test needs it besides the browser).
pub fn have_ffmpeg() -> bool {
    on_path("ffmpeg").is_some()
}
