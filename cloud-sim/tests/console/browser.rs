//! A headless Chromium driven over WebDriver (chromedriver, from Debian's `chromium-driver`;
//! `.ci/run` installs both). Each test gets its own chromedriver on a free loopback port and its
//! own throw-away browser profile.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::Value;

/// How long a test waits for the page to show something.
pub const T: Duration = Duration::from_secs(20);

pub struct Browser {
    pub client: Client,
    driver: Child,
    profile: PathBuf,
}

fn chromedriver() -> String {
    std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into())
}

fn chromium() -> String {
    std::env::var("CHROME_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

impl Browser {
    /// Starts chromedriver and a 1280x900 headless Chromium session.
    pub async fn start() -> Self {
        let port = free_port();
        let driver = Command::new(chromedriver())
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}): the console tests need Chromium and chromedriver \
                     (apt-get install chromium chromium-driver; .ci/run installs them)",
                    chromedriver()
                )
            });
        let profile =
            std::env::temp_dir().join(format!("simcloud-console-{}-{port}", std::process::id()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,900", "--no-first-run", "--disable-extensions",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.enforce_http(true);
        let url = format!("http://127.0.0.1:{port}");
        // chromedriver takes a moment to listen: retry the session until it does.
        let client = sim_common::wait_for("chromedriver to start a session", T, || {
            let (url, caps, connector) = (url.clone(), caps.clone(), connector.clone());
            async move {
                ClientBuilder::new(connector)
                    .capabilities(caps)
                    .connect(&url)
                    .await
                    .ok()
            }
        })
        .await;
        Self {
            client,
            driver,
            profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `script` returns something other than null, false or "" and returns it.
    pub async fn wait_js(&self, what: &str, script: &str) -> Value {
        sim_common::wait_for(what, T, || async {
            let v = self.client.execute(script, vec![]).await.ok()?;
            match &v {
                Value::Null | Value::Bool(false) => None,
                Value::String(s) if s.is_empty() => None,
                _ => Some(v),
            }
        })
        .await
    }

    /// The text of the first element matching `css`, or "" if there is none.
    pub async fn text(&self, css: &str) -> String {
        let v = self
            .js(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
                vec![css.into()],
            )
            .await;
        v.as_str().unwrap_or_default().to_owned()
    }

    /// The element matching `css`, once it exists.
    async fn element(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(T)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    /// Clicks the element matching `css`, waiting for it to exist.
    pub async fn click(&self, css: &str) {
        self.element(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Chooses the option with `value` in the select matching `css`.
    pub async fn select(&self, css: &str, value: &str) {
        self.element(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("select {value} in {css}: {e}"));
    }

    /// Types `text` into the input matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.element(css)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Saves a PNG of the whole page (the window grown to its height, within 2,000 px) to
    /// `target/tmp/console-screenshots/<name>.png` and returns its path. The README's picture
    /// is one of these.
    pub async fn screenshot_page(&self, name: &str) -> PathBuf {
        let height = self
            .js(
                "return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight",
                vec![],
            )
            .await
            .as_u64()
            .unwrap_or(900)
            .clamp(600, 2000);
        self.client
            .set_window_size(1280, u32::try_from(height).unwrap_or(900))
            .await
            .expect("resize the window");
        let png = self.client.screenshot().await.expect("screenshot");
        self.client
            .set_window_size(1280, 900)
            .await
            .expect("resize the window back");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Ends the session (the browser quits); dropping `self` then stops chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// Ends chromedriver and any browser process of this profile that outlived it (after a
    /// failed test, no one asked the session to close).
    fn stop(&mut self) {
        let _ = self.driver.kill();
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", "--"])
            .arg(format!("--user-data-dir={}", self.profile.display()))
            .status();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.stop();
    }
}
