//! The media buffer: a MediaSource with one SourceBuffer, fed through one
//! queue of operations (append init, append, remove, end of stream) applied
//! one at a time while the SourceBuffer is idle.
//!
//! What to append, remove and when the stream ends is the engine's call;
//! this module only keeps MSE's own rules:
//! - one operation at a time (`updating`), the next on `updateend`;
//! - an append refused with `QuotaExceededError` frees the media behind the
//!   playhead and is retried once; a second refusal is fatal;
//! - `remove()` on an ended MediaSource reopens it, so end of stream is
//!   signalled again after a removal until the next append.

use crate::lifecycle::{cb, free_later, Cb, Ev, Listener, Shared};
use crate::{err_name, err_str, log};
use std::collections::VecDeque;
use std::rc::Weak;
use std::sync::Arc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{EventTarget, HtmlVideoElement, MediaSource, MediaSourceReadyState, SourceBuffer};

/// Events of the video element and the SourceBuffer.
pub(crate) enum MediaEv {
    UpdateEnd,
    BufferError,
    Playing,
    Waiting,
    Ended,
    Seeking,
}

/// A MediaSource attached to a video through an object URL.
#[derive(Clone)]
pub(crate) struct Attached {
    pub video: HtmlVideoElement,
    pub source: MediaSource,
    url: String,
}

impl Attached {
    /// Creates a MediaSource and points the video at it (`sourceopen`
    /// follows).
    pub fn new(video: &HtmlVideoElement) -> Result<Attached, JsValue> {
        let source = MediaSource::new()?;
        let url = web_sys::Url::create_object_url_with_source(&source)?;
        video.set_src(&url);
        Ok(Attached {
            video: video.clone(),
            source,
            url,
        })
    }

    /// Revokes the object URL and empties the video if it still plays ours
    /// (a newer player may already own it).
    pub fn release(&self) {
        let _ = web_sys::Url::revoke_object_url(&self.url);
        if self.video.src() == self.url {
            let _ = self.video.remove_attribute("src");
            self.video.load();
        }
    }
}

enum Op {
    Init(Arc<[u8]>),
    Append {
        data: Arc<[u8]>,
        retried: bool,
    },
    Remove {
        start: f64,
        end: f64,
    },
    /// Move the playhead (seconds).
    #[cfg(feature = "live")]
    Seek(f64),
    EndOfStream,
}

/// Shows `text` to the person watching, in a banner right after `video`
/// (class `shoal-notice`, `role="alert"`, so a page can restyle it), and
/// fires `shoal-error` on the video. Replaces an earlier banner.
pub(crate) fn show_notice(video: &HtmlVideoElement, text: &str) {
    banner(video, text, "shoal-error");
}

/// A passing condition (a live channel interrupted): the same banner,
/// with `shoal-interrupted` fired instead; [`clear_status`] removes it.
#[cfg(feature = "live")]
pub(crate) fn show_status(video: &HtmlVideoElement, text: &str) {
    banner(video, text, "shoal-interrupted");
}

/// Removes the banner and fires `shoal-resumed`.
pub(crate) fn clear_status(video: &HtmlVideoElement) {
    if let Some(e) = video
        .next_element_sibling()
        .filter(|e| e.class_name() == "shoal-notice")
    {
        e.remove();
    }
    if let Ok(ev) = web_sys::Event::new("shoal-resumed") {
        let _ = video.dispatch_event(&ev);
    }
}

fn banner(video: &HtmlVideoElement, text: &str, event: &str) {
    let show = || -> Result<(), JsValue> {
        let parent = video
            .parent_node()
            .ok_or("the video is not in a document")?;
        let doc = video.owner_document().ok_or("no document")?;
        let next = video.next_element_sibling();
        let div = match next.filter(|e| e.class_name() == "shoal-notice") {
            Some(old) => old,
            None => {
                let div = doc.create_element("div")?;
                div.set_class_name("shoal-notice");
                div.set_attribute("role", "alert")?;
                div.set_attribute(
                    "style",
                    "margin:.5em 0;padding:.6em 1em;background:#3a1d1d;color:#fff;font:14px/1.4 sans-serif;border-radius:4px",
                )?;
                parent.insert_before(&div, video.next_sibling().as_ref())?;
                div
            }
        };
        div.set_text_content(Some(text));
        video.dispatch_event(&web_sys::Event::new(event)?)?;
        Ok(())
    };
    if let Err(e) = show() {
        crate::log(&format!(
            "cannot show the notice {text:?}: {}",
            crate::err_str(e)
        ));
    }
}

pub(crate) struct Media {
    at: Attached,
    sb: SourceBuffer,
    queue: VecDeque<Op>,
    listeners: Vec<Listener>,
    /// End of stream was signalled and nothing was appended since.
    ended: bool,
    play_asked: bool,
    /// Playback reached the end (the element paused itself): a seek back
    /// plays again.
    play_after_seek: bool,
    /// Seeks made for the engine whose `seeking` event is still to come.
    own_seeks: u32,
}

impl Media {
    pub fn video(&self) -> &HtmlVideoElement {
        &self.at.video
    }

    pub fn new(at: Attached, sb: SourceBuffer, weak: &Weak<Shared>) -> Result<Media, JsValue> {
        let ev = |e: fn() -> MediaEv| cb(weak, move |_| Some(Ev::Media(e())));
        let (sb_target, video_target): (EventTarget, EventTarget) =
            (sb.clone().into(), at.video.clone().into());
        let wanted = [
            (&sb_target, "updateend", ev(|| MediaEv::UpdateEnd)),
            (&sb_target, "error", ev(|| MediaEv::BufferError)),
            (&video_target, "playing", ev(|| MediaEv::Playing)),
            (&video_target, "waiting", ev(|| MediaEv::Waiting)),
            (&video_target, "ended", ev(|| MediaEv::Ended)),
            (&video_target, "seeking", ev(|| MediaEv::Seeking)),
        ];
        let mut listeners = Vec::with_capacity(wanted.len());
        for (target, kind, cb) in wanted {
            match Listener::new(target, kind, cb) {
                Ok(l) => listeners.push(l),
                Err(e) => {
                    let mut graveyard = Vec::new();
                    listeners.into_iter().for_each(|l| l.detach(&mut graveyard));
                    free_later(graveyard);
                    return Err(e);
                }
            }
        }
        Ok(Media {
            at,
            sb,
            queue: VecDeque::new(),
            listeners,
            ended: false,
            play_asked: false,
            play_after_seek: false,
            own_seeks: 0,
        })
    }

    pub fn push_init(&mut self, data: Arc<[u8]>) {
        self.queue.push_back(Op::Init(data));
    }

    pub fn push_append(&mut self, data: Arc<[u8]>) {
        self.queue.push_back(Op::Append {
            data,
            retried: false,
        });
    }

    pub fn push_remove(&mut self, start_ms: u64, end_ms: u64) {
        self.queue.push_back(Op::Remove {
            start: start_ms as f64 / 1000.0,
            end: end_ms as f64 / 1000.0,
        });
    }

    /// Moves the playhead once what was queued before is appended (live:
    /// joining near the edge, jumping a gap).
    #[cfg(feature = "live")]
    pub fn push_seek(&mut self, position_ms: u64) {
        self.queue.push_back(Op::Seek(position_ms as f64 / 1000.0));
    }

    /// Whether a `seeking` event is one of ours (and forgets it).
    pub fn take_own_seek(&mut self) -> bool {
        let ours = self.own_seeks > 0;
        self.own_seeks = self.own_seeks.saturating_sub(1);
        ours
    }

    /// Live: playing faster to catch up with the edge, in thousandths.
    #[cfg(feature = "live")]
    pub fn set_rate(&self, permille: u32) {
        self.at.video.set_playback_rate(permille as f64 / 1000.0);
    }

    pub fn push_end_of_stream(&mut self) {
        self.queue.push_back(Op::EndOfStream);
    }

    /// Applies queued operations while the SourceBuffer is idle. An error
    /// is fatal for playback.
    pub fn pump(&mut self) -> Result<(), String> {
        loop {
            if self.at.source.ready_state() == MediaSourceReadyState::Closed || self.sb.updating() {
                return Ok(());
            }
            let Some(op) = self.queue.pop_front() else {
                return Ok(());
            };
            match op {
                Op::Init(data) => {
                    self.ended = false;
                    self.append(&data).map_err(|e| {
                        format!("the media buffer refused the init segment: {}", err_str(e))
                    })?;
                    return Ok(());
                }
                Op::Append { data, retried } => {
                    self.ended = false;
                    match self.append(&data) {
                        Ok(()) => return Ok(()),
                        Err(e) if err_name(&e) == "QuotaExceededError" && !retried => {
                            self.queue.push_front(Op::Append {
                                data,
                                retried: true,
                            });
                            match self.behind_playhead() {
                                Some((start, end)) if self.sb.remove(start, end).is_ok() => {
                                    log(&format!("media buffer full: removed {}-{} ms behind the playhead, retrying the append", (start * 1000.0) as u64, (end * 1000.0) as u64));
                                    return Ok(());
                                }
                                _ => log("media buffer full and nothing behind the playhead to remove: retrying the append once"),
                            }
                        }
                        Err(e) => {
                            return Err(format!(
                                "the media buffer refused a segment: {}",
                                err_str(e)
                            ))
                        }
                    }
                }
                Op::Remove { start, end } => {
                    let start = start.max(0.0);
                    if end > start {
                        match self.sb.remove(start, end) {
                            Ok(()) => {
                                if self.ended {
                                    // remove() reopened the MediaSource.
                                    self.queue.push_front(Op::EndOfStream);
                                }
                                return Ok(());
                            }
                            Err(e) => log(&format!(
                                "cannot remove {}-{} ms from the media buffer: {}",
                                (start * 1000.0) as u64,
                                (end * 1000.0) as u64,
                                err_str(e)
                            )),
                        }
                    }
                }
                #[cfg(feature = "live")]
                Op::Seek(t) => {
                    self.own_seeks += 1;
                    self.at.video.set_current_time(t);
                }
                Op::EndOfStream => {
                    if self.at.source.ready_state() == MediaSourceReadyState::Open {
                        if let Err(e) = self.at.source.end_of_stream() {
                            log(&format!("cannot signal end of stream: {}", err_str(e)));
                        }
                    }
                    self.ended = true;
                }
            }
        }
    }

    fn append(&self, data: &[u8]) -> Result<(), JsValue> {
        // SAFETY: the view is handed straight to appendBuffer, which copies
        // it before returning; no Rust allocation happens in between, so
        // the Wasm memory cannot grow (and detach the view) meanwhile.
        let view = unsafe { js_sys::Uint8Array::view(data) };
        self.sb.append_buffer_with_array_buffer_view(&view)
    }

    /// The buffered media behind the playhead (minus a second of margin).
    fn behind_playhead(&self) -> Option<(f64, f64)> {
        let ranges = self.sb.buffered().ok()?;
        if ranges.length() == 0 {
            return None;
        }
        let start = ranges.start(0).ok()?;
        let end = self.at.video.current_time() - 1.0;
        (end > start).then_some((start, end))
    }

    /// Asks the video to play once the first media is buffered (a rejected
    /// autoplay is logged; the viewer can still press play).
    pub fn play_when_buffered(&mut self) {
        if self.play_asked || self.at.video.buffered().length() == 0 || !self.at.video.paused() {
            return;
        }
        self.play_asked = true;
        self.play();
    }

    /// Playback reached the end; the element paused itself.
    pub fn on_ended(&mut self) {
        self.play_after_seek = true;
    }

    pub fn on_playing(&mut self) {
        self.play_after_seek = false;
    }

    /// A seek after the end plays again (a viewer who paused stays paused).
    pub fn on_seeking(&mut self) {
        if std::mem::take(&mut self.play_after_seek) && self.at.video.paused() {
            self.play();
        }
    }

    fn play(&self) {
        if let Ok(p) = self.at.video.play() {
            spawn_local(async move {
                if let Err(e) = JsFuture::from(p).await {
                    log(&format!(
                        "the video did not start playing by itself: {}",
                        err_str(e)
                    ));
                }
            });
        }
    }

    pub fn position_ms(&self) -> u64 {
        (self.at.video.current_time() * 1000.0).max(0.0) as u64
    }

    pub fn current_time(&self) -> f64 {
        self.at.video.current_time()
    }

    /// Seconds of media in the video's buffer (all ranges).
    pub fn buffered_seconds(&self) -> f64 {
        let r = self.at.video.buffered();
        (0..r.length())
            .map(|i| r.end(i).unwrap_or(0.0) - r.start(i).unwrap_or(0.0))
            .sum()
    }

    /// Detaches every listener and releases the MediaSource.
    pub fn detach(self, graveyard: &mut Vec<Cb>) {
        for l in self.listeners {
            l.detach(graveyard);
        }
        self.at.release();
    }
}
