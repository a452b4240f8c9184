//! Ed25519 signature checks for live channels, done by the browser's
//! WebCrypto (`crypto.subtle`), so no curve arithmetic ships in the Wasm.
//! WebCrypto exists only in secure contexts (https, or http on localhost):
//! elsewhere a live channel cannot be verified and the player says so.

use crate::lifecycle::{post, Ev, Shared};
use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use std::rc::Weak;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{spawn_local, JsFuture};

fn subtle() -> Result<JsValue, String> {
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into()).map_err(crate::err_str)?;
    let subtle = Reflect::get(&crypto, &"subtle".into()).map_err(crate::err_str)?;
    if subtle.is_undefined() {
        return Err("this page has no WebCrypto (crypto.subtle needs https or localhost): live segments cannot be verified".into());
    }
    Ok(subtle)
}

fn call(target: &JsValue, method: &str, args: &Array) -> Result<Promise, String> {
    let f: js_sys::Function = Reflect::get(target, &method.into())
        .map_err(crate::err_str)?
        .dyn_into()
        .map_err(|_| format!("crypto.subtle.{method} is not a function"))?;
    f.apply(target, args)
        .map_err(crate::err_str)?
        .dyn_into()
        .map_err(|_| format!("crypto.subtle.{method} did not return a promise"))
}

fn algorithm() -> JsValue {
    let a = Object::new();
    let _ = Reflect::set(&a, &"name".into(), &"Ed25519".into());
    a.into()
}

async fn verify(key: [u8; 32], message: Vec<u8>, signature: [u8; 64]) -> Result<bool, String> {
    let subtle = subtle()?;
    let usages = Array::of1(&"verify".into());
    let import = Array::of5(
        &"raw".into(),
        &Uint8Array::from(&key[..]).into(),
        &algorithm(),
        &JsValue::FALSE,
        &usages.into(),
    );
    let ck = JsFuture::from(call(&subtle, "importKey", &import)?)
        .await
        .map_err(|e| {
            format!(
                "this browser cannot import an Ed25519 key: {}",
                crate::err_str(e)
            )
        })?;
    let args = Array::of4(
        &algorithm(),
        &ck,
        &Uint8Array::from(&signature[..]).into(),
        &Uint8Array::from(&message[..]).into(),
    );
    let ok = JsFuture::from(call(&subtle, "verify", &args)?)
        .await
        .map_err(crate::err_str)?;
    Ok(ok.as_bool() == Some(true))
}

/// Checks `signature` of `message` under `key` and posts
/// [`Ev::Signature`] with the answer; a browser that cannot check at all
/// posts the reason instead.
pub(crate) fn check(
    weak: &Weak<Shared>,
    id: u64,
    key: [u8; 32],
    message: Vec<u8>,
    signature: [u8; 64],
) {
    let weak = weak.clone();
    spawn_local(async move {
        let result = verify(key, message, signature).await;
        post(&weak, Ev::Signature { id, result });
    });
}
