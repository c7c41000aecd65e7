//! Form bodies as the token endpoint and Graph read them, urlencoded and multipart: never a
//! panic; what is read has no repeated name and no control character.
#![no_main]
use axum::body::Body;
use axum::http::Request;
use gramkey_server::handlers::form::FormFields;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let content_type = if kind % 2 == 0 {
        "application/x-www-form-urlencoded"
    } else {
        "multipart/form-data; boundary=XyZ"
    };
    let req = Request::builder()
        .method("POST")
        .header("content-type", content_type)
        .body(Body::from(body.to_vec()))
        .expect("a request");
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    });
    if let Ok(fields) = rt.block_on(FormFields::read(req, &())) {
        for (k, v) in &fields.0 {
            assert!(gramkey_domain::text::forbidden_char(k).is_none());
            assert!(gramkey_domain::text::forbidden_char(v).is_none());
        }
    }
});
