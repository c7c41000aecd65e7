//! Helpers for tests that drive the server's pages as a browser would (this crate's tests, the
//! SDK's, the CLI's). Not used by the server itself.

/// The hidden `<input>`s of a page (CSRF token, authorize parameters), unescaped.
pub fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    html.split("<input")
        .skip(1)
        .filter(|tag| tag.contains("type=\"hidden\""))
        .filter_map(|tag| {
            let attr = |name: &str| {
                let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
                let end = tag[start..].find('"')? + start;
                Some(
                    tag[start..end]
                        .replace("&quot;", "\"")
                        .replace("&lt;", "<")
                        .replace("&gt;", ">")
                        .replace("&amp;", "&"),
                )
            };
            Some((attr("name")?, attr("value")?))
        })
        .collect()
}

/// Fills the sign-in form of `page` (its hidden fields, the username and password) and posts it
/// to `action`.
#[allow(clippy::unwrap_used)]
async fn sign_in_form(
    c: &reqwest::Client,
    page: &str,
    action: url::Url,
    (user, password): (&str, &str),
) -> reqwest::Response {
    let mut form = hidden_inputs(page);
    form.push(("username".into(), user.into()));
    form.push(("password".into(), password.into()));
    c.post(action).form(&form).send().await.unwrap()
}

/// Opens an authorize URL with a fresh cookie jar, signs in as `user`, consents if asked, and
/// returns where the server sent the browser in the end (the app's redirect URI, with the code).
///
/// # Panics
/// When a step does not answer as the flow expects: it is for tests.
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub async fn sign_in_and_consent(url: &str, user: &str, password: &str) -> String {
    sign_in_and_consent_trusting(url, user, password, None).await
}

/// [`sign_in_and_consent`] against a server whose TLS certificate is `ca_pem` (self-signed).
///
/// # Panics
/// When a step does not answer as the flow expects: it is for tests.
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub async fn sign_in_and_consent_trusting(
    url: &str,
    user: &str,
    password: &str,
    ca_pem: Option<&[u8]>,
) -> String {
    let mut builder = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = ca_pem {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap());
    }
    let c = builder.build().unwrap();
    let base = url::Url::parse(url).expect("an authorize URL");
    let location = |r: &reqwest::Response| {
        r.headers()["location"]
            .to_str()
            .expect("an ASCII Location")
            .to_owned()
    };
    let page = c.get(url).send().await.unwrap().text().await.unwrap();
    let r = sign_in_form(
        &c,
        &page,
        base.join("/oauth/authorize/login").unwrap(),
        (user, password),
    )
    .await;
    let r = c
        .get(base.join(&location(&r)).unwrap())
        .send()
        .await
        .unwrap();
    if r.status().is_redirection() {
        // Consent given before is remembered: straight back to the app.
        return location(&r);
    }
    let mut form = hidden_inputs(&r.text().await.unwrap());
    form.push(("decision".into(), "allow".into()));
    let r = c
        .post(base.join("/oauth/authorize/consent").unwrap())
        .form(&form)
        .send()
        .await
        .unwrap();
    location(&r)
}

/// Opens a device flow's `verification_uri_complete` with a fresh cookie jar, signs in as
/// `user` on the way, and allows or cancels on the consent page. Returns the last page's
/// status and HTML.
///
/// # Panics
/// When a step does not answer as the flow expects: it is for tests.
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub async fn enter_device_code(
    verification_uri_complete: &str,
    user: &str,
    password: &str,
    allow: bool,
) -> (u16, String) {
    let c = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = url::Url::parse(verification_uri_complete).expect("a device URL");
    let location = |r: &reqwest::Response| {
        let to = r.headers()["location"].to_str().expect("an ASCII Location");
        base.join(to).unwrap()
    };
    // Nobody is signed in: off to sign in, and back with the code kept.
    let r = c.get(base.clone()).send().await.unwrap();
    assert_eq!(r.status(), 303, "a sign-in first");
    let login = location(&r);
    let page = c
        .get(login.clone())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = sign_in_form(&c, &page, login, (user, password)).await;
    assert_eq!(r.status(), 303, "signed in");
    let entry = c
        .get(location(&r))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let code = base
        .query_pairs()
        .find(|(k, _)| k == "user_code")
        .map(|(_, v)| v.into_owned())
        .expect("a user_code");
    assert!(entry.contains(&code), "the code is filled in: {entry}");
    let mut form = hidden_inputs(&entry);
    form.push(("user_code".into(), code));
    let r = c
        .post(base.join("/device").unwrap())
        .form(&form)
        .send()
        .await
        .unwrap();
    let consent = r.text().await.unwrap();
    assert!(
        consent.contains("would like to access your account"),
        "the consent page: {consent}"
    );
    let mut form = hidden_inputs(&consent);
    form.push((
        "decision".into(),
        if allow { "allow" } else { "deny" }.into(),
    ));
    let r = c
        .post(base.join("/device").unwrap())
        .form(&form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}
