//! HTTP origin: the packaged VOD files (with range requests, for the
//! players' HTTP fallback and any HLS player), the content index, health
//! and statistics. CORS is open: the player runs on other sites' pages.
//!
//! Every handler that can fail returns [`AppError`]: the client gets a
//! status and a short, safe message; details go to the log only. Only
//! plain file names inside a published content's folder are ever served.

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

/// An HTTP request the origin cannot answer with a file.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("unknown content {0:?}")]
    UnknownContent(String),
    #[error("no such file")]
    NoSuchFile,
    /// A server-side failure; `detail` is logged, never sent.
    #[error("internal error")]
    Internal { detail: String },
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = match &self {
            AppError::UnknownContent(_) | AppError::NoSuchFile => StatusCode::NOT_FOUND,
            AppError::Internal { detail } => {
                tracing::error!(%detail, "HTTP request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let mut msg = self.to_string();
        // Echo at most a short, printable content id.
        msg.truncate(120);
        (status, format!("{msg}\n")).into_response()
    }
}

#[derive(Clone)]
pub struct HttpState {
    pub library: Arc<Library>,
    /// VOD contents published on command while the seed runs
    /// ([`crate::control`]), by content id.
    pub added: AddedVods,
    pub stats: Arc<SeedStats>,
    pub capacity: u32,
}

/// VOD contents published while the seed runs.
pub type AddedVods = Arc<std::sync::RwLock<Vec<Arc<crate::package::Published>>>>;

fn added_get(added: &AddedVods, id: &str) -> Option<Arc<crate::package::Published>> {
    let v = added.read().unwrap_or_else(|e| e.into_inner());
    v.iter().find(|p| p.content_id == id).cloned()
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
            title: p.manifest.title().to_string(),
            duration_ms: p.manifest.duration_ms(),
            manifest: format!("/vod/{}/manifest.json", p.content_id),
            mime: p.manifest.mime().to_string(),
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
    let mut entries = index(&st.library);
    {
        let added = st.added.read().unwrap_or_else(|e| e.into_inner());
        let lib = Library {
            published: added.iter().map(|p| (**p).clone()).collect(),
            failed: Vec::new(),
        };
        entries.extend(index(&lib));
    }
    let mut resp = Json(entries).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

async fn api_stats(State(st): State<HttpState>) -> Result<Response, AppError> {
    let snap = st.stats.snapshot();
    let mut v = serde_json::to_value(&snap).map_err(|e| AppError::Internal {
        detail: format!("stats do not serialize: {e}"),
    })?;
    v["capacity"] = st.capacity.into();
    let added = st.added.read().unwrap_or_else(|e| e.into_inner()).len();
    v["contents"] = (st.library.published.len() + added).into();
    let mut resp = Json(v).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
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
) -> Result<Response, AppError> {
    let added = added_get(&st.added, &content_id);
    let Some(p) = st.library.get(&content_id).or(added.as_deref()) else {
        let shown: String = content_id
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect();
        return Err(AppError::UnknownContent(shown));
    };
    if !servable_name(&file) {
        return Err(AppError::NoSuchFile);
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
    Ok(resp)
}

/// The size of a request as it came: request line, headers, and the body
/// its `Content-Length` declares.
fn request_bytes(req: &Request) -> u64 {
    let line = req.method().as_str().len() + req.uri().to_string().len() + 12;
    let headers: usize = (req.headers().iter())
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    let body = (req.headers().get(header::CONTENT_LENGTH))
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    (line + headers + 2) as u64 + body
}

/// Counts response body bytes as they are actually sent.
pub(crate) async fn count_bytes(
    State(stats): State<Arc<SeedStats>>,
    req: Request,
    next: Next,
) -> Response {
    stats.http_requests.fetch_add(1, Relaxed);
    stats.http_bytes_in.fetch_add(request_bytes(&req), Relaxed);
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
