//! HTTP origin: the packaged VOD files (with range requests, for the
//! players' HTTP fallback and any HLS player), the content index, health
//! and statistics. CORS is open: the player runs on other sites' pages.

use crate::package::Library;
use crate::stats::SeedStats;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::ServiceExt;
use tower_http::cors::CorsLayer;
use tower_http::services::ServeFile;

#[derive(Clone)]
pub struct HttpState {
    pub library: Arc<Library>,
    pub stats: Arc<SeedStats>,
    pub capacity: u32,
}

/// One entry of `GET /vod/index.json`.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct IndexEntry {
    pub content_id: String,
    pub title: String,
    pub duration_ms: u64,
    /// Absolute path of the manifest on this origin.
    pub manifest: String,
    pub mime: String,
    pub segments: u32,
}

pub fn index(library: &Library) -> Vec<IndexEntry> {
    library
        .published
        .iter()
        .map(|p| IndexEntry {
            content_id: p.content_id.clone(),
            title: p.manifest.title.clone(),
            duration_ms: p.manifest.duration_ms(),
            manifest: format!("/vod/{}/manifest.json", p.content_id),
            mime: p.manifest.mime.clone(),
            segments: p.manifest.segment_count(),
        })
        .collect()
}

pub fn router(state: HttpState) -> Router {
    let vod = Router::new()
        .route("/vod/index.json", get(vod_index))
        .route("/vod/{content_id}/{file}", get(vod_file).head(vod_file))
        .layer(middleware::from_fn_with_state(
            state.stats.clone(),
            count_bytes,
        ));
    Router::new()
        .merge(vod)
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/stats", get(api_stats))
        .with_state(state)
        .layer(CorsLayer::permissive())
}

async fn vod_index(State(st): State<HttpState>) -> Response {
    let mut resp = Json(index(&st.library)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

async fn api_stats(State(st): State<HttpState>) -> Response {
    let snap = st.stats.snapshot();
    let mut v = serde_json::to_value(&snap).unwrap_or_default();
    v["capacity"] = st.capacity.into();
    v["contents"] = st.library.published.len().into();
    let mut resp = Json(v).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A file name the origin may serve: plain, not hidden, no separators.
fn servable_name(file: &str) -> bool {
    !file.is_empty()
        && file.len() <= 128
        && !file.starts_with('.')
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn content_type(file: &str) -> &'static str {
    match file.rsplit('.').next().unwrap_or("") {
        "m4s" => "video/iso.segment",
        "mp4" => "video/mp4",
        "m3u8" => "application/vnd.apple.mpegurl",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

async fn vod_file(
    State(st): State<HttpState>,
    Path((content_id, file)): Path<(String, String)>,
    req: Request,
) -> Response {
    let Some(p) = st.library.get(&content_id) else {
        return (
            StatusCode::NOT_FOUND,
            format!("unknown content {content_id:?}\n"),
        )
            .into_response();
    };
    if !servable_name(&file) {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    }
    let path = p.dir.join(&file);
    let mut resp = match ServeFile::new(path).oneshot(req).await {
        Ok(r) => r.into_response(),
        Err(never) => match never {},
    };
    if resp.status().is_success() {
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(&file)),
        );
        // Segment URLs are content-addressed by id; manifests may be rebuilt.
        let cc = if file.ends_with(".m4s") || file.ends_with(".mp4") {
            "public, max-age=86400"
        } else {
            "public, max-age=60"
        };
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cc));
    }
    resp
}

/// Counts response body bytes as they are actually sent.
async fn count_bytes(State(stats): State<Arc<SeedStats>>, req: Request, next: Next) -> Response {
    stats.http_requests.fetch_add(1, Relaxed);
    let resp = next.run(req).await;
    resp.map(|inner| Body::new(CountingBody { inner, stats }))
}

struct CountingBody {
    inner: Body,
    stats: Arc<SeedStats>,
}

impl http_body::Body for CountingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.stats.http_bytes.fetch_add(data.len() as u64, Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
