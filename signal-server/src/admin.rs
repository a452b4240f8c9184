//! The operator's API, behind the admin credential
//! (`Authorization: Bearer <--admin-key>`). Without `--admin-key` it is off.
//!
//! - `POST /api/viewers/{id}/kick` with an optional JSON body
//!   `{"ban_s": 600, "message": "..."}`: `id` is a peer id (one connection)
//!   or a viewer id (token `sub`: all its connections). The server sends
//!   `kick`, again every second until the viewer answers `stopped`, then
//!   removes it (its peers get `peer_left`). The call returns when every
//!   connection acknowledged, or when the heartbeat timeout proves the
//!   silent ones gone (they are removed then too).
//! - `GET /api/admin/viewers`: connected viewers (viewer id, user and
//!   network group, address, swarms, connected time, its last reports), at
//!   most 5,000 of them, and `total`.
//! - `GET /api/admin/seeds`: every seed (id, address, origin, contents,
//!   capacity, uptime) with its last own report (uptime, bytes in and out
//!   over WebRTC and HTTP, viewers, channels ok/interrupted, cache use) and
//!   `stale` when no report came for 15 s.
//! - `GET /api/admin/channels`: every swarm with its status (live, interrupted, vod, no_seed), members and totals
//!   (bytes, P2P share, stalls).
//! - `GET /api/admin/events`: the last events (hellos, refusals, kicks,
//!   removals, settings).
//! - `GET /api/admin/connections`: viewers' connection outcomes (success
//!   rate, routes: host, srflx, prflx, relay) per network group.
//! - `GET`/`PUT /api/admin/settings`: the matching rule
//!   (`{"match_enough": 40, "match_max": 50}`).
//! - `POST /api/admin/channels` with `{"seed": ID, "kind": "live", "name":
//!   N, "source": S}` or `{"seed": ID, "kind": "vod", "file": PATH}` and
//!   `DELETE /api/admin/channels/{name}?seed=ID` (stops a live channel or
//!   unpublishes a VOD): a command to a registered
//!   seed, which checks it, carries it out and answers with its new
//!   contents ([`swarm_proto::signal::SeedCommand`]).
//! - `GET /metrics`: Prometheus metrics.
//! - `GET`/`POST /api/admin/users`, `PUT`/`DELETE /api/admin/users/{name}`:
//!   the built-in users ([`crate::users`]).

use std::time::{Duration, Instant};

use axum::extract::{Path, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use swarm_proto::signal::{SeedCommand, MAX_NAME_LEN};

use crate::auth::unix_now;
use crate::state::KickTarget;
use crate::AppState;

/// How often an unacknowledged kick is sent again.
pub const KICK_RETRY: Duration = Duration::from_secs(1);
/// Longest kick message.
pub const MAX_KICK_MESSAGE: usize = 256;
/// Longest ban: ten years.
pub const MAX_BAN_S: u64 = 10 * 365 * 24 * 3600;

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct E {
        error: String,
    }
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(E {
            error: message.into(),
        }),
    )
        .into_response()
}

/// Checks the admin credential; the error response otherwise.
#[allow(clippy::result_large_err)] // an axum Response, returned at once
pub(crate) fn check_admin(app: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    let Some(key) = &app.config().admin_key else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "the admin API is off: start shoal-signal with --admin-key",
        ));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if key.matches(p.trim().as_bytes()) => Ok(()),
        Some(_) => Err(error(StatusCode::UNAUTHORIZED, "wrong admin credential")),
        None => Err(error(
            StatusCode::UNAUTHORIZED,
            "the admin API needs `Authorization: Bearer <admin key>`",
        )),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KickRequest {
    #[serde(default)]
    ban_s: Option<u64>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct KickedConnection {
    peer_id: String,
    /// It answered `stopped` (false: removed after the heartbeat timeout,
    /// or it disconnected first).
    acked: bool,
    ms: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct KickResponse {
    id: String,
    connections: Vec<KickedConnection>,
    /// Unix second the ban ends, when one was asked for.
    banned_until: Option<u64>,
    ms: u64,
}

pub(crate) async fn kick(
    AxState(app): AxState<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Option<Json<KickRequest>>,
) -> Response {
    if let Err(r) = check_admin(&app, &headers) {
        return r;
    }
    let req = body.map(|Json(b)| b).unwrap_or_default();
    if id.is_empty() || id.len() > MAX_NAME_LEN {
        return error(
            StatusCode::BAD_REQUEST,
            "the viewer id is empty or too long",
        );
    }
    let message = req
        .message
        .unwrap_or_else(|| "you were removed by the operator".into());
    if message.len() > MAX_KICK_MESSAGE {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`message` is over {MAX_KICK_MESSAGE} bytes"),
        );
    }
    if req.ban_s.is_some_and(|s| s > MAX_BAN_S) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`ban_s` is over {MAX_BAN_S} (ten years)"),
        );
    }
    let started = Instant::now();
    let ban_s = req.ban_s.filter(|&s| s > 0);
    let targets: Vec<KickTarget> = {
        let mut st = app.lock();
        let conns = st.viewer_connections(&id);
        if conns.is_empty() {
            if let Some(s) = ban_s {
                // Not connected: the ban still holds off its next hello.
                st.ban_viewer(&id, unix_now().saturating_add(s));
            } else {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("no viewer {id} is connected"),
                );
            }
        }
        conns
            .iter()
            .filter_map(|p| st.kick(p, &message, ban_s))
            .collect()
    };
    let banned_until = ban_s.map(|s| unix_now().saturating_add(s));
    let deadline = started + Duration::from_millis(app.config().heartbeat_timeout_ms);
    let connections = futures_util::future::join_all(
        targets
            .into_iter()
            .map(|t| wait_for_ack(app.clone(), t, started, deadline)),
    )
    .await;
    let body = KickResponse {
        id,
        connections,
        banned_until,
        ms: started.elapsed().as_millis() as u64,
    };
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response()
}

/// Waits for one connection's `stopped`, sending the kick again every
/// [`KICK_RETRY`]; past `deadline` the connection is removed unacknowledged.
async fn wait_for_ack(
    app: AppState,
    mut t: KickTarget,
    started: Instant,
    deadline: Instant,
) -> KickedConnection {
    let acked = loop {
        let next = (Instant::now() + KICK_RETRY).min(deadline);
        match tokio::time::timeout_at(next.into(), &mut t.acked).await {
            Ok(Ok(())) => break true,
            // Removed without acknowledging (disconnected, timed out).
            Ok(Err(_)) => break false,
            Err(_) if Instant::now() >= deadline => {
                app.lock().give_up_kick(&t.peer_id);
                break matches!(t.acked.try_recv(), Ok(()));
            }
            Err(_) => app.lock().resend_kick(&t.peer_id),
        }
    };
    app.metrics().kick(acked);
    KickedConnection {
        peer_id: t.peer_id,
        acked,
        ms: started.elapsed().as_millis() as u64,
    }
}

pub(crate) fn json_ok(body: impl Serialize) -> Response {
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response()
}

pub(crate) async fn viewers(AxState(app): AxState<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = check_admin(&app, &headers) {
        return r;
    }
    let (mut viewers, total) = app.lock().viewers_view();
    viewers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
    json_ok(serde_json::json!({ "viewers": viewers, "total": total }))
}

pub(crate) async fn seeds(AxState(app): AxState<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = check_admin(&app, &headers) {
        return r;
    }
    let seeds = app.lock().admin_seeds_view();
    json_ok(serde_json::json!({ "seeds": seeds }))
}

pub(crate) async fn channels(AxState(app): AxState<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = check_admin(&app, &headers) {
        return r;
    }
    let view = app.lock().swarms_view();
    json_ok(view.sorted())
}

pub(crate) async fn events(AxState(app): AxState<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = check_admin(&app, &headers) {
        return r;
    }
    let events = app.lock().events();
    json_ok(serde_json::json!({ "events": events }))
}

/// `GET /api/admin/connections`: viewers' connection outcomes per network
/// group (attempts, successes, routes, mean connect time) and how many
/// failed pairs the matcher is keeping apart.
pub(crate) async fn connections(AxState(app): AxState<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = check_admin(&app, &headers) {
        return r;
    }
    let (groups, failed_pairs) = app.lock().conns_view();
    let groups: Vec<_> = groups
        .into_iter()
        .map(|(group, g)| {
            let rate = g.success_rate();
            serde_json::json!({ "group": group, "success_rate": rate, "conns": g })
        })
        .collect();
    json_ok(serde_json::json!({ "groups": groups, "failed_pairs": failed_pairs }))
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    match_enough: usize,
    match_max: usize,
}

/// Longest peer list `match_max` may ask for.
pub const MAX_MATCH_MAX: usize = 200;

pub(crate) async fn settings(AxState(app): AxState<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = check_admin(&app, &headers) {
        return r;
    }
    let rule = app.lock().match_rule();
    json_ok(Settings {
        match_enough: rule.enough_same_group,
        match_max: rule.max,
    })
}

pub(crate) async fn put_settings(
    AxState(app): AxState<AppState>,
    headers: HeaderMap,
    body: Result<Json<Settings>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(r) = check_admin(&app, &headers) {
        return r;
    }
    let Json(s) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if s.match_max == 0 || s.match_max > MAX_MATCH_MAX {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`match_max` must be 1 to {MAX_MATCH_MAX}"),
        );
    }
    let rule = swarm_proto::matching::MatchRule {
        enough_same_group: s.match_enough,
        max: s.match_max,
    };
    app.lock().set_match_rule(rule);
    json_ok(s)
}

pub(crate) async fn metrics(AxState(app): AxState<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = check_admin(&app, &headers) {
        return r;
    }
    let (view, seeds) = {
        let st = app.lock();
        (st.swarms_view_listing(0), st.admin_seeds_view())
    };
    let text = app.metrics().render(&view, &seeds);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// How long a channel command waits for the seed's answer (a live channel
/// answers once its ingest started; a VOD file at once, before packaging).
pub const SEED_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewChannel {
    seed: String,
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    file: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SeedQuery {
    seed: String,
}

/// `POST /api/admin/channels`: starts a live channel or publishes a VOD
/// file on one seed.
pub(crate) async fn create_channel(
    AxState(app): AxState<AppState>,
    headers: HeaderMap,
    body: Result<Json<NewChannel>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(r) = check_admin(&app, &headers) {
        return r;
    }
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let command = match (req.kind.as_str(), req.name, req.source, req.file) {
        ("live", Some(name), Some(source), None) => SeedCommand::StartLive { name, source },
        ("vod", None, None, Some(file)) => SeedCommand::AddVod { file },
        ("live", ..) => {
            return error(
                StatusCode::BAD_REQUEST,
                "a live channel needs `name` and `source` (and no `file`)",
            )
        }
        ("vod", ..) => {
            return error(
                StatusCode::BAD_REQUEST,
                "a VOD channel needs `file` (a path in the seed's media folder; its name comes from the file)",
            )
        }
        _ => return error(StatusCode::BAD_REQUEST, "`kind` is `live` or `vod`"),
    };
    run_seed_command(app, req.seed, command).await
}

/// `DELETE /api/admin/channels/{name}?seed=ID`: stops a live channel, or
/// unpublishes a VOD published on that seed.
pub(crate) async fn delete_channel(
    AxState(app): AxState<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<SeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(r) = check_admin(&app, &headers) {
        return r;
    }
    let Ok(axum::extract::Query(q)) = query else {
        return error(StatusCode::BAD_REQUEST, "give the seed: `?seed=<seed id>`");
    };
    // A live channel of that seed is stopped, anything else unpublished
    // as a VOD (the seed refuses what it does not hold).
    let live = app.lock().seed_runs_live(&q.seed, &name);
    let command = if live {
        SeedCommand::StopLive { name }
    } else {
        SeedCommand::RemoveVod { name }
    };
    run_seed_command(app, q.seed, command).await
}

async fn run_seed_command(app: AppState, seed: String, command: SeedCommand) -> Response {
    if seed.is_empty() || seed.len() > MAX_NAME_LEN {
        return error(StatusCode::BAD_REQUEST, "`seed` is empty or too long");
    }
    if let Err(e) = command.check() {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    let vod = matches!(command, SeedCommand::AddVod { .. });
    let started = Instant::now();
    let sent = app.lock().seed_command(&seed, command);
    let (id, rx) = match sent {
        Ok(v) => v,
        Err(e) if e.starts_with("no seed") => return error(StatusCode::NOT_FOUND, e),
        Err(e) => return error(StatusCode::TOO_MANY_REQUESTS, e),
    };
    let result = match tokio::time::timeout(SEED_COMMAND_TIMEOUT, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => {
            return error(
                StatusCode::BAD_GATEWAY,
                format!("seed {seed} went away before answering"),
            )
        }
        Err(_) => {
            app.lock().forget_command(id);
            return error(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "seed {seed} did not answer within {} s",
                    SEED_COMMAND_TIMEOUT.as_secs()
                ),
            );
        }
    };
    if !result.ok {
        return error(StatusCode::UNPROCESSABLE_ENTITY, result.message);
    }
    let status = if vod {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({
            "seed": seed,
            "ok": true,
            "message": result.message,
            "ms": started.elapsed().as_millis() as u64,
        })),
    )
        .into_response()
}
