//! HTTP: the manifest, and the init and media segments the engine asks for
//! (`Output::HttpFetch`), from a list of origins.
//!
//! Origins: the manifest's own base first, then every seed the signal
//! server lists for this content (`{http_base}/vod/{content_id}/`). A fetch
//! that fails moves the player to the next origin for the retry (the
//! engine decides when to retry). A body larger than expected is refused
//! before it is copied into Wasm memory.

use crate::lifecycle::{post, Ev, Shared};
use crate::{err_str, log};
use js_sys::{ArrayBuffer, Uint8Array};
use std::rc::Weak;
use swarm_proto::signal::SeedInfo;
use swarm_proto::Resource;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{AbortSignal, RequestInit, Response};

/// Largest manifest accepted (100,000 segments of JSON fit well within).
pub(crate) const MAX_MANIFEST_BYTES: u64 = 32 << 20;
/// Most origins kept (the manifest's and seeds').
const MAX_ORIGINS: usize = 16;

pub(crate) struct HttpEv {
    pub res: Resource,
    /// Index of the origin it came from.
    pub origin: usize,
    pub url: String,
    pub result: Result<Vec<u8>, String>,
}

/// Fetches `url` and returns the body, refusing one over `max_bytes`.
pub(crate) async fn fetch_bytes(
    url: &str,
    signal: &AbortSignal,
    max_bytes: u64,
) -> Result<Vec<u8>, String> {
    let w = web_sys::window().ok_or("no window")?;
    let init = RequestInit::new();
    init.set_signal(Some(signal));
    let resp: Response = JsFuture::from(w.fetch_with_str_and_init(url, &init))
        .await
        .map_err(err_str)?
        .unchecked_into();
    if !resp.ok() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let buf: ArrayBuffer = JsFuture::from(resp.array_buffer().map_err(err_str)?)
        .await
        .map_err(err_str)?
        .unchecked_into();
    let len = buf.byte_length() as u64;
    if len > max_bytes {
        return Err(format!(
            "body of {len} bytes, more than the {max_bytes} expected"
        ));
    }
    Ok(Uint8Array::new(&buf).to_vec())
}

pub(crate) async fn fetch_text(
    url: &str,
    signal: &AbortSignal,
    max_bytes: u64,
) -> Result<String, String> {
    let bytes = fetch_bytes(url, signal, max_bytes).await?;
    String::from_utf8(bytes).map_err(|_| "the response is not UTF-8 text".into())
}

pub(crate) struct Origins {
    content_id: String,
    /// `vod` or `live`: where the content sits on a seed's origin.
    dir: &'static str,
    /// What segment URIs are resolved against: the manifest's own URL
    /// first (always kept), then seeds' `{http_base}/vod/{content_id}/`.
    bases: Vec<String>,
    current: usize,
}

impl Origins {
    pub fn new(manifest_url: &str, content_id: &str, dir: &'static str) -> Origins {
        Origins {
            content_id: content_id.to_owned(),
            dir,
            bases: vec![manifest_url.to_owned()],
            current: 0,
        }
    }

    /// Replaces the seeds' origins with those of `seeds` that hold this
    /// content; the manifest's origin stays first.
    pub fn set_seeds(&mut self, seeds: &[SeedInfo]) {
        let current = self.bases[self.current].clone();
        self.bases.truncate(1);
        let manifest_dir = web_sys::Url::new_with_base(".", &self.bases[0])
            .ok()
            .map(|u| u.href());
        for s in seeds
            .iter()
            .filter(|s| s.contents.contains(&self.content_id))
        {
            let Some(base) = seed_base(&s.http_base, self.dir, &self.content_id) else {
                log(&format!(
                    "seed {} announces an unusable HTTP origin; ignored",
                    s.seed_id
                ));
                continue;
            };
            if self.bases.len() >= MAX_ORIGINS {
                log(&format!(
                    "more than {MAX_ORIGINS} HTTP origins listed; the rest are ignored"
                ));
                break;
            }
            if manifest_dir.as_ref() != Some(&base) && !self.bases.contains(&base) {
                self.bases.push(base);
            }
        }
        self.current = self.bases.iter().position(|b| *b == current).unwrap_or(0);
    }

    pub fn len(&self) -> usize {
        self.bases.len()
    }

    /// The URL of `uri` at the current origin, and that origin's index.
    pub fn url(&self, uri: &str) -> Result<(String, usize), String> {
        let u = web_sys::Url::new_with_base(uri, &self.bases[self.current]).map_err(err_str)?;
        Ok((u.href(), self.current))
    }

    /// A fetch from origin `index` failed: later fetches go to the next
    /// origin (unless another failure moved on already). Returns the new
    /// current base when it changed.
    pub fn failed(&mut self, index: usize) -> Option<&str> {
        if index != self.current || self.bases.len() < 2 {
            return None;
        }
        self.current = (self.current + 1) % self.bases.len();
        Some(&self.bases[self.current])
    }

    /// Fetches `uri` (expected to be `size` bytes) for the engine and posts
    /// the outcome.
    pub fn fetch(
        &self,
        res: Resource,
        uri: &str,
        size: u64,
        signal: &AbortSignal,
        weak: &Weak<Shared>,
    ) {
        let (url, origin) = match self.url(uri) {
            Ok(u) => u,
            Err(e) => {
                let result = Err(format!("cannot make a URL of {uri:?}: {e}"));
                return post(
                    weak,
                    Ev::Http(HttpEv {
                        res,
                        origin: self.current,
                        url: uri.to_owned(),
                        result,
                    }),
                );
            }
        };
        let (signal, weak) = (signal.clone(), weak.clone());
        spawn_local(async move {
            let result = fetch_bytes(&url, &signal, size).await;
            post(
                &weak,
                Ev::Http(HttpEv {
                    res,
                    origin,
                    url,
                    result,
                }),
            );
        });
    }
}

/// `{http_base}/vod/{content_id}/`, for an http(s) base only.
fn seed_base(http_base: &str, dir: &str, content_id: &str) -> Option<String> {
    let u = web_sys::Url::new(http_base).ok()?;
    if !matches!(u.protocol().as_str(), "http:" | "https:") {
        return None;
    }
    let root = http_base.trim_end_matches('/');
    Some(
        web_sys::Url::new(&format!("{root}/{dir}/{content_id}/"))
            .ok()?
            .href(),
    )
}
