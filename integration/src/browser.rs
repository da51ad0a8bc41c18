//! Headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`), for
//! the web UI's end-to-end tests and its page-load bench. `chromedriver` runs as a child on a
//! free loopback port; [`fantoccini`] speaks WebDriver to it over plain HTTP.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};

use crate::tools::require;

/// A browser session and the chromedriver behind it (killed on drop).
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    /// Chromium's profile, removed on drop (chromedriver's own temporary profile would be
    /// left behind when the browser is killed).
    _profile: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").finish_non_exhaustive()
    }
}

/// Whether chromium and chromedriver are installed: skips (`false`) on a developer's machine
/// without them, panics under CI (`.ci/run` installs them).
pub fn available(what: &str) -> bool {
    require("chromedriver", &["--version"], what) && require("chromium", &["--version"], what)
}

/// Where screenshots go: `$UI_SCREENSHOTS`, else `ui-screenshots/` in the target dir.
pub fn screenshot_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("UI_SCREENSHOTS") {
        return PathBuf::from(dir);
    }
    let bin = crate::concord_bin();
    bin.parent()
        .and_then(|profile| profile.parent())
        .map_or_else(
            || PathBuf::from("ui-screenshots"),
            |t| t.join("ui-screenshots"),
        )
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a `width` x `height` window.
    pub async fn start(width: u32, height: u32) -> anyhow::Result<Browser> {
        let port = free_port()?;
        // Its own process group, so a test that fails before `close` can still end
        // chromedriver and every Chromium process it started (see `Drop`).
        let driver = Command::new("chromedriver")
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let profile = tempfile::tempdir()?;
        let browser = Browser {
            client: connect(port, width, height, profile.path()).await?,
            driver,
            _profile: profile,
        };
        // Chromium's window includes its (headless) frame: size the viewport exactly.
        browser.set_viewport(width, height).await?;
        Ok(browser)
    }

    /// Resizes so the page's viewport is `width` x `height` CSS pixels.
    pub async fn set_viewport(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.client.set_window_size(width, height).await?;
        let inner = self
            .client
            .execute("return [window.innerWidth, window.innerHeight];", vec![])
            .await?;
        let got = |i: usize| inner.get(i).and_then(|v| v.as_u64()).unwrap_or(0) as u32;
        let (dw, dh) = (width.saturating_sub(got(0)), height.saturating_sub(got(1)));
        if dw > 0 || dh > 0 {
            self.client.set_window_size(width + dw, height + dh).await?;
        }
        Ok(())
    }

    /// Waits (up to [`crate::EVENTUALLY`]) for an element matching `css`. The error carries
    /// the page's URL, any script error it reported, and its text.
    pub async fn wait_css(&self, css: &str) -> anyhow::Result<Element> {
        let found = self
            .client
            .wait()
            .at_most(crate::EVENTUALLY)
            .every(Duration::from_millis(25))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => Ok(element),
            Err(e) => {
                let page = self
                    .client
                    .execute(
                        "return location.href + '\\nerror: ' + (document.body.dataset.error || 'none') \
                         + '\\nfetched: ' + performance.getEntriesByType('resource') \
                         .map(e => e.name.replace(location.origin, '')).join(' ') \
                         + '\\n' + document.body.innerText;",
                        vec![],
                    )
                    .await
                    .map(|v| v.as_str().unwrap_or_default().to_string())
                    .unwrap_or_default();
                bail!("waiting for {css}: {e}\npage: {page}")
            }
        }
    }

    /// Waits (up to [`crate::EVENTUALLY`]) until the JavaScript expression `expr` is truthy.
    pub async fn wait_js(&self, expr: &str) -> anyhow::Result<()> {
        let script = format!("return Boolean({expr});");
        let deadline = tokio::time::Instant::now() + crate::EVENTUALLY;
        loop {
            if self.client.execute(&script, vec![]).await?.as_bool() == Some(true) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("waited {:?} for {expr}", crate::EVENTUALLY);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Opens `url` and waits until the view marks itself loaded (`main[data-loaded=view]`).
    pub async fn open(&self, url: &str, view: &str) -> anyhow::Result<()> {
        self.client.goto(url).await?;
        self.wait_css(&format!("main[data-loaded=\"{view}\"]"))
            .await?;
        Ok(())
    }

    /// Writes a PNG of the viewport to [`screenshot_dir`]`/name.png`.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Ends the session and chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
        // Dropping `self` ends chromedriver and whatever is left in its process group; the
        // group id stays valid until then, as chromedriver is not yet reaped.
    }
}

impl Drop for Browser {
    /// Kills chromedriver's whole process group: killing chromedriver alone would leave its
    /// Chromium running, orphaned, with a profile directory in /tmp.
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Connects to chromedriver once it answers (it takes a moment to listen).
async fn connect(
    port: u16,
    width: u32,
    height: u32,
    profile: &std::path::Path,
) -> anyhow::Result<Client> {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_string(),
        serde_json::json!({
            "args": [
                "--headless=new",
                // Tests run as root in CI, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                // No crash-reporter helper processes (they outlive a killed browser).
                "--disable-crash-reporter",
                "--disable-breakpad",
                "--no-first-run",
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&url)
            .await;
        match attempt {
            Ok(client) => return Ok(client),
            Err(e) if tokio::time::Instant::now() > deadline => {
                bail!("chromedriver on port {port} never started a session: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
