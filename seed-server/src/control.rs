//! The operator's commands to a running seed ([`SeedCommand`], sent by the
//! signal server on behalf of its admin API): start and stop live channels.
//!
//! Everything is checked here, whoever sent it: a channel name must be a
//! valid content id not taken by another content, a source goes through
//! the parser of `--live`, the number of live channels is bounded.

use crate::http::AddedVods;
use crate::live::channel::{self as live_channel, LiveChannels, LiveSettings};
use crate::live::ingest::{ChannelConfig, SourceSpec};
use crate::serve::SwarmHub;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use swarm_proto::live::LiveConfig;
use swarm_proto::signal::{LiveChannelInfo, SeedCommand, SeedInfo};
use tracing::{info, warn};

/// Default of [`ControlConfig::max_live`].
pub const DEFAULT_MAX_LIVE: usize = 16;

#[derive(Clone, Debug)]
pub struct ControlConfig {
    /// Where each live channel's signing key is kept (`NAME.key`).
    pub key_dir: PathBuf,
    pub segment_ms: u32,
    pub push_copies: usize,
    /// Most live channels at once (those of `--live` included).
    pub max_live: usize,
    /// The seed's media folder: a command's `file:` / `file-once:` source
    /// is a path relative to it, and must stay inside it.
    pub media_dir: Option<PathBuf>,
}

/// Resolves `rel`, a path a command names, inside `media`: refused when
/// absolute, with `..`, missing, or leading out of `media` through a
/// symbolic link.
pub fn resolve_in_media(media: &Path, rel: &str) -> Result<PathBuf, String> {
    let p = Path::new(rel);
    if rel.is_empty()
        || p.is_absolute()
        || !p.components().all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(format!(
            "{rel:?} must be a relative path inside the media folder, without `..`"
        ));
    }
    let root = media
        .canonicalize()
        .map_err(|e| format!("the media folder {}: {e}", media.display()))?;
    let full = root
        .join(p)
        .canonicalize()
        .map_err(|e| format!("{rel:?}: {e}"))?;
    if !full.starts_with(&root) {
        return Err(format!("{rel:?} leads out of the media folder"));
    }
    if !full.is_file() {
        return Err(format!("{rel:?} is not a file"));
    }
    Ok(full)
}

/// A seed's live channels and announcement, changed by commands.
pub struct SeedControl {
    cfg: ControlConfig,
    hub: Arc<SwarmHub>,
    live: LiveChannels,
    /// The seed's announcement apart from its contents and live keys.
    base: SeedInfo,
    /// Running live channels and their public keys (hex).
    keys: Mutex<BTreeMap<String, String>>,
    /// One command at a time.
    busy: tokio::sync::Mutex<()>,
    /// VOD on command: the package cache and the HTTP origin's list.
    vod: Option<(PathBuf, AddedVods)>,
    /// The file being packaged (one at a time).
    packaging: Mutex<Option<String>>,
    /// Bumped when the contents change outside a command's answer (a VOD
    /// file finished packaging): the signaling client announces them.
    changed: tokio::sync::watch::Sender<u64>,
}

/// What a command did: `ok` and a sentence for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    pub message: String,
    /// The contents changed: the new announcement goes with the answer.
    pub changed: bool,
}

impl Outcome {
    fn refused(message: impl Into<String>) -> Outcome {
        Outcome {
            ok: false,
            message: message.into(),
            changed: false,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SeedControl {
    /// `base` is the seed's announcement at start (its `live` lists the
    /// channels of `--live`, already in `live` and in the hub).
    pub fn new(
        cfg: ControlConfig,
        hub: Arc<SwarmHub>,
        live: LiveChannels,
        base: SeedInfo,
    ) -> SeedControl {
        let keys = (base.live.iter())
            .map(|l| (l.channel.clone(), l.public_key.clone()))
            .collect();
        SeedControl {
            cfg,
            hub,
            live,
            base,
            keys: Mutex::new(keys),
            busy: tokio::sync::Mutex::new(()),
            vod: None,
            packaging: Mutex::new(None),
            changed: tokio::sync::watch::channel(0).0,
        }
    }

    /// Lets `add_vod` package files of the media folder into `cache` and
    /// publish them on the HTTP origin's `added` list.
    pub fn with_vod(mut self, cache: PathBuf, added: AddedVods) -> SeedControl {
        self.vod = Some((cache, added));
        self
    }

    /// The live channels (running ones and those stopped but still held).
    pub fn live(&self) -> &LiveChannels {
        &self.live
    }

    /// Changes to announce (a VOD file packaged after its command was answered).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The seed's announcement now.
    pub fn seed_info(&self) -> SeedInfo {
        SeedInfo {
            contents: self.hub.contents(),
            live: (lock(&self.keys).iter())
                .map(|(channel, public_key)| LiveChannelInfo {
                    channel: channel.clone(),
                    public_key: public_key.clone(),
                })
                .collect(),
            ..self.base.clone()
        }
    }

    /// Carries out one command.
    pub async fn run(self: &Arc<Self>, command: SeedCommand) -> Outcome {
        let _one = self.busy.lock().await;
        let outcome = match command {
            SeedCommand::StartLive { name, source } => self.start_live(&name, &source),
            SeedCommand::StopLive { name } => self.stop_live(&name).await,
            SeedCommand::AddVod { file } => self.add_vod(&file),
            SeedCommand::RemoveVod { name } => self.remove_vod(&name),
        };
        if outcome.ok {
            info!(message = %outcome.message, "command done");
        } else {
            warn!(message = %outcome.message, "command refused");
        }
        outcome
    }

    fn start_live(&self, name: &str, source: &str) -> Outcome {
        if !swarm_proto::manifest::valid_content_id(name) {
            return Outcome::refused(format!(
                "channel name {name:?} must be 1-64 characters of [A-Za-z0-9_-]"
            ));
        }
        let spec = match SourceSpec::parse(source) {
            Ok(s) => s,
            Err(e) => return Outcome::refused(format!("source {source:?}: {e}")),
        };
        // A file source names a file of the media folder, nothing else.
        let spec = match spec {
            SourceSpec::File(p) | SourceSpec::LoopFile(p) => {
                let Some(media) = &self.cfg.media_dir else {
                    return Outcome::refused("this seed has no media folder for file sources");
                };
                let full = match resolve_in_media(media, &p.to_string_lossy()) {
                    Ok(f) => f,
                    Err(e) => return Outcome::refused(format!("source {source:?}: {e}")),
                };
                if source.starts_with("file-once:") {
                    SourceSpec::File(full)
                } else {
                    SourceSpec::LoopFile(full)
                }
            }
            other => other,
        };
        if lock(&self.keys).contains_key(name) || self.hub.has(name) {
            return Outcome::refused(format!("the name {name:?} is already taken on this seed"));
        }
        let running = lock(&self.keys).len();
        if running >= self.cfg.max_live {
            return Outcome::refused(format!(
                "this seed already runs {running} live channels (at most {})",
                self.cfg.max_live
            ));
        }
        let secret = match live_channel::load_or_create_key(&self.cfg.key_dir, name) {
            Ok(k) => k,
            Err(e) => {
                return Outcome::refused(format!(
                    "cannot read or make the channel's key in {}: {e}",
                    self.cfg.key_dir.display()
                ))
            }
        };
        let cfg = ChannelConfig {
            segment_ms: self.cfg.segment_ms,
            ..ChannelConfig::new(name.to_owned(), spec)
        };
        let live_cfg = LiveConfig {
            push_copies: self.cfg.push_copies,
            ..LiveConfig::default()
        };
        let swarm = self.hub.add_live(name, live_cfg);
        match live_channel::start(cfg, secret, LiveSettings::default(), Some(swarm)) {
            Ok((ch, _task)) => {
                info!(channel = %name, %source, "live channel started on command");
                lock(&self.keys).insert(name.to_owned(), hex::encode(ch.public_key()));
                let mut map = self.live.write();
                // Stopped channels stay served (their live.json says so)
                // until their name is reused or room is needed.
                if map.len() >= self.cfg.max_live.saturating_mul(2) {
                    let keys = lock(&self.keys);
                    map.retain(|n, _| keys.contains_key(n));
                }
                map.insert(name.to_owned(), ch);
                Outcome {
                    ok: true,
                    message: format!("live channel {name} started from {source}"),
                    changed: true,
                }
            }
            Err(e) => {
                self.hub.remove(name);
                Outcome::refused(format!("source {source:?}: {e}"))
            }
        }
    }

    /// Starts packaging `file` (answered at once); the content is
    /// announced when it is published, with progress in the log.
    fn add_vod(self: &Arc<Self>, file: &str) -> Outcome {
        let (Some(media), Some((cache, added))) = (&self.cfg.media_dir, &self.vod) else {
            return Outcome::refused("this seed does not publish VOD files on command");
        };
        let path = match resolve_in_media(media, file) {
            Ok(p) => p,
            Err(e) => return Outcome::refused(e),
        };
        if self.hub.contents().len() >= swarm_proto::signal::MAX_SEED_CONTENTS {
            return Outcome::refused(format!(
                "this seed already holds {} contents",
                swarm_proto::signal::MAX_SEED_CONTENTS
            ));
        }
        {
            let mut busy = lock(&self.packaging);
            if let Some(other) = busy.as_ref() {
                return Outcome::refused(format!(
                    "this seed is packaging {other:?}; try again when it is done"
                ));
            }
            *busy = Some(file.to_owned());
        }
        let message = format!("packaging {file}; the seed announces it when it is done");
        let (me, cache, added, file) =
            (self.clone(), cache.clone(), added.clone(), file.to_owned());
        tokio::spawn(async move {
            info!(%file, "packaging on command");
            match crate::package::package_file(&path, &cache).await {
                Ok(p) if me.hub.has(&p.content_id) => {
                    info!(%file, content_id = %p.content_id, "already published");
                }
                Ok(p) => {
                    me.hub.add_vod(&p);
                    info!(%file, content_id = %p.content_id, "published on command");
                    (added.write().unwrap_or_else(|e| e.into_inner())).push(Arc::new(p));
                    me.changed.send_modify(|v| *v += 1);
                }
                Err(e) => warn!(%file, error = %e, "cannot package the file asked for"),
            }
            *lock(&me.packaging) = None;
        });
        Outcome {
            ok: true,
            message,
            changed: false,
        }
    }

    /// Unpublishes a VOD published on command: off the HTTP origin's list
    /// (its files answer 404), out of the hub (no new WebRTC viewer), and
    /// announced without it. The `--media` contents of the start stay.
    fn remove_vod(&self, name: &str) -> Outcome {
        let Some((_, added)) = &self.vod else {
            return Outcome::refused("this seed publishes no VOD on command");
        };
        let removed = {
            let mut a = added.write().unwrap_or_else(|e| e.into_inner());
            let before = a.len();
            a.retain(|p| p.content_id != name);
            a.len() != before
        };
        if !removed {
            return Outcome::refused(if lock(&self.keys).contains_key(name) {
                format!("{name:?} is a live channel: stop it as such")
            } else if self.hub.has(name) {
                format!("{name:?} was published from the media folder at start: remove its file and restart the seed")
            } else {
                format!("no VOD {name:?} was published on this seed")
            });
        }
        self.hub.remove(name);
        info!(content = %name, "VOD unpublished on command");
        Outcome {
            ok: true,
            message: format!("VOD {name} unpublished"),
            changed: true,
        }
    }

    async fn stop_live(&self, name: &str) -> Outcome {
        if lock(&self.keys).remove(name).is_none() {
            return Outcome::refused(format!("no live channel {name:?} runs on this seed"));
        }
        self.hub.remove(name);
        if let Some(ch) = self.live.get(name) {
            ch.stop().await;
        }
        info!(channel = %name, "live channel stopped on command");
        Outcome {
            ok: true,
            message: format!("live channel {name} stopped"),
            changed: true,
        }
    }
}
