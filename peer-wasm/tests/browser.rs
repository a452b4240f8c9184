//! The player's edges, in headless Chromium.

use shoal_peer::Player;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn video() -> web_sys::HtmlVideoElement {
    let doc = web_sys::window().unwrap().document().unwrap();
    doc.create_element("video").unwrap().dyn_into().unwrap()
}

fn opts(pairs: &[(&str, &str)]) -> JsValue {
    let o = js_sys::Object::new();
    for (k, v) in pairs {
        js_sys::Reflect::set(&o, &(*k).into(), &(*v).into()).unwrap();
    }
    o.into()
}

fn message(e: JsValue) -> String {
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

#[wasm_bindgen_test]
fn options_without_src_are_refused_clearly() {
    let err = Player::new(video(), opts(&[])).err().expect("no src must be an error");
    assert!(message(err).contains("options.src"));
}

#[wasm_bindgen_test]
fn the_browser_plays_what_the_seed_packages() {
    // The seed packages H.264 + AAC into fragmented MP4.
    assert!(web_sys::MediaSource::is_type_supported("video/mp4; codecs=\"avc1.64001e,mp4a.40.2\""));
}

#[wasm_bindgen_test]
async fn an_unreachable_manifest_is_a_clear_error() {
    // Port 9 on loopback: nothing listens, the fetch fails at once.
    let p = Player::new(video(), opts(&[("src", "http://127.0.0.1:9/vod/x/manifest.json"), ("signal", "ws://127.0.0.1:9/ws")])).unwrap();
    let err = p.start().await.expect_err("start must fail");
    let m = message(err);
    assert!(m.contains("cannot load manifest") && m.contains("127.0.0.1:9"), "{m}");
    // Stats of a player that never started are an empty object, not a crash.
    assert!(p.stats().is_object());
    p.destroy();
}
