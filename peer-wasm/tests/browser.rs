//! The player's edges and lifecycle, in headless Chromium.
//!
//! Nothing here needs a server: manifests are blob: URLs, and the signal
//! server is a loopback port where nothing listens (run inside
//! scripts/netns.sh, as scripts/test.sh does).

use js_sys::{Array, Promise, Reflect};
use shoal_peer::Player;
use swarm_proto::manifest::{sha256_hex, SegmentEntry};
#[cfg(feature = "vod")]
use swarm_proto::{manifest::MANIFEST_VERSION, ManifestParts};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const NOBODY: &str = "ws://127.0.0.1:9/ws";

fn video() -> web_sys::HtmlVideoElement {
    let doc = web_sys::window().unwrap().document().unwrap();
    let v: web_sys::HtmlVideoElement = doc.create_element("video").unwrap().dyn_into().unwrap();
    v.set_muted(true);
    doc.body().unwrap().append_child(&v).unwrap();
    v
}

fn opts(pairs: &[(&str, &str)]) -> JsValue {
    let o = js_sys::Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &(*k).into(), &(*v).into()).unwrap();
    }
    o.into()
}

fn message(e: JsValue) -> String {
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

fn get(o: &JsValue, k: &str) -> JsValue {
    Reflect::get(o, &k.into()).unwrap()
}

/// A valid manifest (one segment of a codec Chromium plays) as a blob: URL.
/// Its segments cannot be fetched (a blob: URL is no base for them), which
/// the player must survive. The live-only build (no feature `vod`) gets a
/// live channel's manifest instead, the only kind it plays.
fn manifest_url() -> String {
    blob_url(&manifest_json())
}

/// `stats().segments` of that manifest: a video's segment count, 0 for a
/// live channel.
#[cfg(feature = "vod")]
const SEGMENTS: f64 = 1.0;
#[cfg(not(feature = "vod"))]
const SEGMENTS: f64 = 0.0;

fn blob_url(json: &str) -> String {
    let bag = web_sys::BlobPropertyBag::new();
    bag.set_type("application/json");
    let blob =
        web_sys::Blob::new_with_str_sequence_and_options(&Array::of1(&json.into()), &bag).unwrap();
    web_sys::Url::create_object_url_with_blob(&blob).unwrap()
}

#[cfg(not(feature = "vod"))]
fn manifest_json() -> String {
    use swarm_proto::live::{LiveManifest, LiveMeta, LIVE_MANIFEST_VERSION};
    let seg = vec![7u8; 1000];
    LiveManifest {
        version: LIVE_MANIFEST_VERSION,
        channel: "lifecycle-test".into(),
        title: "test".into(),
        mime: "video/mp4; codecs=\"avc1.64001e\"".into(),
        piece_size: 16 * 1024,
        segment_ms: 1000,
        playlist: "index.m3u8".into(),
        init: SegmentEntry {
            uri: "init.mp4".into(),
            size: seg.len() as u64,
            sha256: sha256_hex(&seg),
            duration_ms: 0,
        },
        init_sig: [0x5a; 64],
        public_key: [0x11; 32],
        recent: vec![LiveMeta {
            seq: 1,
            start_ms: 0,
            duration_ms: 1000,
            capture_ms: 1_796_588_053_814,
            size: 1000,
            sha256: [7; 32],
            sig: [0xab; 64],
        }],
        interrupted: None,
    }
    .to_json()
}

#[cfg(feature = "vod")]
fn manifest_json() -> String {
    let seg = vec![7u8; 1000];
    let entry = |uri: &str, duration_ms| SegmentEntry {
        uri: uri.into(),
        size: seg.len() as u64,
        sha256: sha256_hex(&seg),
        duration_ms,
    };
    let m = ManifestParts {
        version: MANIFEST_VERSION,
        content_id: "lifecycle-test".into(),
        title: "test".into(),
        playlist: "index.m3u8".into(),
        mime: "video/mp4; codecs=\"avc1.64001e\"".into(),
        piece_size: 16 * 1024,
        init: entry("init.mp4", 0),
        segments: vec![entry("seg_00000.m4s", 2000)],
    }
    .validate()
    .unwrap();
    m.to_json()
}

fn player(v: &web_sys::HtmlVideoElement) -> Player {
    Player::new(
        v.clone(),
        opts(&[("src", &manifest_url()), ("signal", NOBODY)]),
    )
    .unwrap()
}

async fn sleep(ms: i32) {
    let p = Promise::new(&mut |resolve, _| {
        web_sys::window()
            .unwrap()
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
            .unwrap();
    });
    JsFuture::from(p).await.unwrap();
}

#[wasm_bindgen_test]
fn options_without_src_are_refused_clearly() {
    let err = Player::new(video(), opts(&[]))
        .err()
        .expect("no src must be an error");
    assert!(message(err).contains("options.src"));
}

#[wasm_bindgen_test]
fn a_signal_url_that_is_not_a_websocket_is_refused_clearly() {
    let err = Player::new(
        video(),
        opts(&[
            ("src", "http://127.0.0.1:9/m.json"),
            ("signal", "http://127.0.0.1:9/ws"),
        ]),
    )
    .err()
    .expect("an http:// signal URL must be an error");
    assert!(message(err).contains("options.signal"));
}

#[wasm_bindgen_test]
fn a_started_at_in_the_future_or_not_a_number_is_refused_clearly() {
    let now = web_sys::window().unwrap().performance().unwrap().now();
    for bad in [
        JsValue::from(now + 60_000.0),
        JsValue::from("soon"),
        JsValue::from(f64::NAN),
    ] {
        let o = opts(&[("src", "http://127.0.0.1:9/m.json")]);
        Reflect::set(&o, &"startedAt".into(), &bad).unwrap();
        let err = Player::new(video(), o)
            .err()
            .unwrap_or_else(|| panic!("startedAt {bad:?} must be an error"));
        assert!(message(err).contains("options.startedAt"));
    }
    let o = opts(&[("src", "http://127.0.0.1:9/m.json")]);
    Reflect::set(&o, &"startedAt".into(), &JsValue::from(now - 10.0)).unwrap();
    assert!(
        Player::new(video(), o).is_ok(),
        "a recent startedAt is accepted"
    );
}

#[wasm_bindgen_test]
fn the_browser_plays_what_the_seed_packages() {
    // The seed packages H.264 + AAC into fragmented MP4.
    assert!(web_sys::MediaSource::is_type_supported(
        "video/mp4; codecs=\"avc1.64001e,mp4a.40.2\""
    ));
}

#[wasm_bindgen_test]
async fn an_unreachable_manifest_is_a_clear_error() {
    // Port 9 on loopback: nothing listens, the fetch fails at once.
    let p = Player::new(
        video(),
        opts(&[
            ("src", "http://127.0.0.1:9/vod/x/manifest.json"),
            ("signal", NOBODY),
        ]),
    )
    .unwrap();
    let err = JsFuture::from(p.start())
        .await
        .expect_err("start must fail");
    let m = message(err);
    assert!(
        m.contains("cannot load manifest") && m.contains("127.0.0.1:9"),
        "{m}"
    );
    // A failed start ends destroyed, its error kept in stats().
    let s = p.stats();
    assert_eq!(get(&s, "state").as_string().unwrap(), "destroyed");
    assert!(get(&s, "error")
        .as_string()
        .unwrap()
        .contains("cannot load manifest"));
    p.destroy();
}

#[wasm_bindgen_test]
fn a_player_that_never_started_has_safe_stats() {
    let p = player(&video());
    let s = p.stats();
    assert_eq!(get(&s, "state").as_string().unwrap(), "idle");
    for k in [
        "bytesFromPeers",
        "bytesFromSeed",
        "bytesFromHttp",
        "bytesUploaded",
        "peers",
        "peerConnections",
        "stalls",
        "segmentsVerified",
    ] {
        assert_eq!(get(&s, k).as_f64(), Some(0.0), "{k}");
    }
    assert!(
        get(&s, "startupMs").is_null() && get(&s, "peerId").is_null() && get(&s, "error").is_null()
    );
    assert!(get(&s, "wasmMemoryBytes").as_f64().unwrap() > 0.0);
    assert_eq!(
        get(&get(&s, "tables"), "storedSegments").as_f64(),
        Some(0.0)
    );
    p.destroy();
    p.destroy();
    assert_eq!(get(&p.stats(), "state").as_string().unwrap(), "destroyed");
}

#[wasm_bindgen_test]
async fn a_second_start_is_rejected_and_the_first_goes_on() {
    let v = video();
    let p = player(&v);
    let first = p.start();
    let second = JsFuture::from(p.start())
        .await
        .expect_err("a second start() must be rejected");
    assert!(message(second).contains("already called"));
    JsFuture::from(first)
        .await
        .expect("the first start() still succeeds");
    assert_eq!(get(&p.stats(), "state").as_string().unwrap(), "running");
    let third = JsFuture::from(p.start())
        .await
        .expect_err("start() on a running player must be rejected");
    assert!(message(third).contains("already called"));
    p.destroy();
}

#[wasm_bindgen_test]
async fn destroy_right_after_start_rejects_start_with_destroyed() {
    let v = video();
    let p = player(&v);
    let started = p.start();
    p.destroy();
    let err = JsFuture::from(started)
        .await
        .expect_err("start() must be rejected");
    assert!(message(err).contains("destroyed"));
    assert_eq!(get(&p.stats(), "state").as_string().unwrap(), "destroyed");
    assert!(!v.has_attribute("src"), "the video must not keep a source");
    let again = JsFuture::from(p.start())
        .await
        .expect_err("start() after destroy must be rejected");
    assert!(message(again).contains("destroyed"));
}

#[wasm_bindgen_test]
async fn destroy_while_the_media_source_opens_frees_it() {
    let v = video();
    let p = std::rc::Rc::new(player(&v));
    // `loadstart` fires once start() pointed the video at its MediaSource,
    // before `sourceopen`: destroy there.
    let p2 = p.clone();
    let on_loadstart = Closure::once(move || p2.destroy());
    v.add_event_listener_with_callback("loadstart", on_loadstart.as_ref().unchecked_ref())
        .unwrap();
    let err = JsFuture::from(p.start())
        .await
        .expect_err("start() must be rejected");
    assert!(message(err).contains("destroyed"));
    v.remove_event_listener_with_callback("loadstart", on_loadstart.as_ref().unchecked_ref())
        .unwrap();
    assert_eq!(get(&p.stats(), "state").as_string().unwrap(), "destroyed");
    assert!(
        !v.has_attribute("src"),
        "the video must not keep the MediaSource"
    );
}

#[wasm_bindgen_test]
async fn a_running_player_survives_unreachable_servers_and_stops_on_destroy() {
    let v = video();
    let p = player(&v);
    JsFuture::from(p.start())
        .await
        .expect("start() resolves once running");
    assert!(
        v.src().starts_with("blob:"),
        "the video plays from a MediaSource"
    );
    // Fetches and the signal connection fail and are retried meanwhile.
    sleep(700).await;
    let s = p.stats();
    assert_eq!(get(&s, "state").as_string().unwrap(), "running");
    assert!(get(&s, "error").is_null(), "{:?}", get(&s, "error"));
    assert_eq!(get(&s, "segments").as_f64(), Some(SEGMENTS));
    assert_eq!(get(&s, "peerConnections").as_f64(), Some(0.0));
    assert_eq!(get(&s, "signalConnected").as_bool(), Some(false));
    assert!(get(&s, "tables").is_object());
    let logs = LogCapture::start();
    sleep(1200).await;
    assert!(
        logs.shoal_lines() > 0,
        "a running player retries and says so"
    );
    p.destroy();
    let s = p.stats();
    assert_eq!(get(&s, "state").as_string().unwrap(), "destroyed");
    assert_eq!(
        get(&s, "segments").as_f64(),
        Some(SEGMENTS),
        "the last figures are kept"
    );
    assert!(!v.has_attribute("src"));
    // Nothing runs any more: no retry, no reconnect, no tick.
    let after = logs.shoal_lines();
    sleep(2500).await;
    assert_eq!(
        logs.shoal_lines(),
        after,
        "the player logged after destroy()"
    );
    drop(logs);
    assert_eq!(get(&p.stats(), "state").as_string().unwrap(), "destroyed");
}

/// Counts `[shoal]` lines logged to the console while alive.
struct LogCapture {
    original: JsValue,
    lines: std::rc::Rc<std::cell::Cell<u32>>,
    _hook: Closure<dyn FnMut(JsValue)>,
}

impl LogCapture {
    fn start() -> LogCapture {
        let console = get(&js_sys::global(), "console");
        let original = get(&console, "log");
        let lines = std::rc::Rc::new(std::cell::Cell::new(0));
        let (l, orig) = (
            lines.clone(),
            original.clone().unchecked_into::<js_sys::Function>(),
        );
        let hook = Closure::wrap(Box::new(move |v: JsValue| {
            if v.as_string().is_some_and(|s| s.starts_with("[shoal]")) {
                l.set(l.get() + 1);
            }
            let _ = orig.call1(&JsValue::NULL, &v);
        }) as Box<dyn FnMut(JsValue)>);
        Reflect::set(&console, &"log".into(), hook.as_ref()).unwrap();
        LogCapture {
            original,
            lines,
            _hook: hook,
        }
    }

    fn shoal_lines(&self) -> u32 {
        self.lines.get()
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        let console = get(&js_sys::global(), "console");
        Reflect::set(&console, &"log".into(), &self.original).unwrap();
    }
}
