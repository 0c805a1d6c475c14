//! A headless user agent that drives the real login and consent pages: it
//! keeps cookies, follows no redirect on its own and submits the forms the
//! pages render.

use std::collections::BTreeMap;

use crate::PASSWORD;

/// A headless user agent: keeps cookies, never follows redirects, and
/// submits the real forms the pages render.
pub struct Browser {
    pub http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

/// A response as the browser saw it.
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The value of a hidden or text input in the page's form.
    pub fn input(&self, name: &str) -> Option<String> {
        let needle = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&needle)? + needle.len();
        let end = self.body[start..].find('"')? + start;
        Some(html_unescape(&self.body[start..end]))
    }

    /// Every hidden input of the page, in order.
    pub fn hidden_inputs(&self) -> Vec<(String, String)> {
        self.inputs()
            .into_iter()
            .filter(|i| i.kind == "hidden")
            .map(|i| (i.name, i.value))
            .collect()
    }

    /// Every named `<input>` of the page, in order, whatever the order of
    /// its attributes (mcpgate's pages and oidc-provider's alike).
    pub fn inputs(&self) -> Vec<Input> {
        let mut out = Vec::new();
        let mut rest = self.body.as_str();
        while let Some(i) = rest.find("<input") {
            let tag_end = rest[i..].find('>').map_or(rest.len(), |e| e + i);
            let tag = &rest[i..tag_end];
            if let Some(name) = attribute(tag, "name") {
                out.push(Input {
                    name,
                    value: attribute(tag, "value").unwrap_or_default(),
                    kind: attribute(tag, "type").unwrap_or_else(|| "text".into()),
                });
            }
            rest = &rest[tag_end..];
        }
        out
    }

    /// The `action` of the page's first form, if it has one.
    pub fn form_action(&self) -> Option<String> {
        let i = self.body.find("<form")?;
        let end = self.body[i..].find('>')? + i;
        attribute(&self.body[i..end], "action")
    }

    /// Which consent form the page shows: `Some("consent")` (approve a client,
    /// scopes and resource), `Some("confirm")` (consent is on record; the
    /// click that sends a public client's code to a loopback redirect URI),
    /// or `None` for any other page.
    pub fn consent_step(&self) -> Option<&str> {
        if self.status != 200 || !self.body.contains("action=\"/consent\"") {
            return None;
        }
        let needle = "data-step=\"";
        let start = self.body.find(needle)? + needle.len();
        let end = self.body[start..].find('"')? + start;
        Some(&self.body[start..end])
    }

    /// Query parameters of the redirect target.
    pub fn location_params(&self) -> BTreeMap<String, String> {
        let loc = self.location.as_deref().unwrap_or("");
        let q = loc.split_once('?').map(|(_, q)| q).unwrap_or("");
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    }
}

/// Decodes the character references an HTML escaper emits: the named
/// `&amp; &lt; &gt; &quot; &apos;` and every numeric `&#NN;` / `&#xHH;`
/// (askama 0.16 writes `&#38;` for `&`).
pub fn html_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let decoded = rest.find(';').filter(|&end| end <= 10).and_then(|end| {
            let c = match &rest[1..end] {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                e => match e.strip_prefix("#x").or_else(|| e.strip_prefix("#X")) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok().and_then(char::from_u32),
                    None => e
                        .strip_prefix('#')
                        .and_then(|d| d.parse().ok())
                        .and_then(char::from_u32),
                },
            }?;
            Some((c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// One `<input>` of a page.
#[derive(Clone, Debug)]
pub struct Input {
    pub name: String,
    pub value: String,
    /// The `type` attribute (`text` when absent).
    pub kind: String,
}

/// The unescaped value of attribute `name` in one tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let mut rest = tag;
    loop {
        let i = rest.find(&format!("{name}=\""))?;
        let before = rest[..i].chars().next_back();
        let start = i + name.len() + 2;
        if before.is_some_and(char::is_whitespace) {
            let end = rest[start..].find('"')? + start;
            return Some(html_unescape(&rest[start..end]));
        }
        rest = &rest[start..];
    }
}

/// The person at the keyboard, for [`Browser::play`].
#[derive(Clone, Debug)]
pub struct User {
    /// The mcpgate account.
    pub username: String,
    /// Its current password.
    pub password: String,
    /// Chosen when mcpgate asks for a new password (a one-time password was
    /// used), and tried once when the current one is refused (an earlier
    /// run may have changed it already).
    pub new_password: String,
    /// The name typed on oidc-provider's development sign-in page (which
    /// takes any name and password).
    pub provider_login: String,
}

impl User {
    /// `username` with `password`, who keeps it when asked for a new one.
    pub fn new(username: &str, password: &str) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
            new_password: password.into(),
            provider_login: username.into(),
        }
    }
}

/// One consent page the user approved: `at` is `mcpgate` or
/// `oidc-provider`; `scopes` are those the page showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consent {
    pub at: &'static str,
    pub scopes: Vec<String>,
}

/// The outcome of [`Browser::play`].
#[derive(Clone, Debug)]
pub struct Played {
    /// The redirect to the client (with `code`, `state`, `iss`, or `error`).
    pub redirect: String,
    /// The consent pages approved on the way, in order.
    pub consents: Vec<Consent>,
}

/// The text of every `<open ...>TEXT</close>` of `html`, unescaped.
fn texts_between(html: &str, open: &str, close: &str) -> Vec<String> {
    html.split(open)
        .skip(1)
        .filter_map(|s| s.split(close).next())
        .map(|s| html_unescape(s.trim()))
        .collect()
}

impl Browser {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("reqwest client");
        Self {
            http,
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, resp: reqwest::Response) -> Page {
        for sc in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            let s = sc.to_str().unwrap_or("");
            let first = s.split(';').next().unwrap_or("");
            if let Some((k, v)) = first.split_once('=') {
                let gone = s.to_ascii_lowercase();
                if v.is_empty()
                    || gone.contains("max-age=0")
                    || gone.contains("expires=thu, 01 jan 1970")
                {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let location = headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.text().await.unwrap_or_default();
        Page {
            status,
            location,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, url: &str) -> Page {
        self.try_get(url).await.expect("GET")
    }

    pub async fn post_form(&mut self, url: &str, form: &[(String, String)]) -> Page {
        self.try_post_form(url, form).await.expect("POST")
    }

    /// [`Browser::get`], with a failed connection as an error.
    pub async fn try_get(&mut self, url: &str) -> Result<Page, reqwest::Error> {
        let r = self
            .http
            .get(url)
            .header(reqwest::header::COOKIE, self.cookie_header())
            .send()
            .await?;
        Ok(self.finish(r).await)
    }

    /// [`Browser::post_form`], with a failed connection as an error.
    pub async fn try_post_form(
        &mut self,
        url: &str,
        form: &[(String, String)],
    ) -> Result<Page, reqwest::Error> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter())
            .finish();
        let r = self
            .http
            .post(url)
            .header(reqwest::header::COOKIE, self.cookie_header())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await?;
        Ok(self.finish(r).await)
    }

    /// Every cookie held, by name.
    pub fn cookies(&self) -> &BTreeMap<String, String> {
        &self.cookies
    }

    /// What a user who trusts the application does with an authorization
    /// URL: follows it through sign-in (mcpgate's, with its password change,
    /// or oidc-provider's development pages), approves every consent page
    /// and continues on mcpgate's connect page, until a redirect goes to a
    /// URL starting with `until` (the client's redirect URI), which is
    /// returned unvisited.
    pub async fn play(&mut self, url: &str, until: &str, user: &User) -> Result<Played, String> {
        let mut consents = Vec::new();
        let mut here = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        let mut page = self.try_get(url).await.map_err(|e| e.to_string())?;
        let mut password_tries = 0;
        for _ in 0..16 {
            if let (300..=399, Some(to)) = (page.status, page.location.as_deref()) {
                let to = here.join(to).map_err(|e| format!("Location {to}: {e}"))?;
                if to.as_str().starts_with(until) {
                    return Ok(Played {
                        redirect: to.into(),
                        consents,
                    });
                }
                page = self.try_get(to.as_str()).await.map_err(|e| e.to_string())?;
                here = to;
                continue;
            }
            let short = |p: &Page| p.body.chars().take(300).collect::<String>();
            if page.status != 200 {
                return Err(format!("{} at {here}: {}", page.status, short(&page)));
            }
            let inputs = page.inputs();
            let value = |n: &str| {
                inputs
                    .iter()
                    .find(|i| i.name == n)
                    .map(|i| i.value.as_str())
            };
            let mut form: Vec<(String, String)> = page.hidden_inputs();
            let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
            let action = page.form_action().unwrap_or_else(|| here.to_string());
            let action = here
                .join(&action)
                .map_err(|e| format!("action {action}: {e}"))?;
            // oidc-provider's development interactions post to /interaction/UID/...
            let provider = action.path().starts_with("/interaction/");
            if provider && value("prompt") == Some("login") {
                form.retain(|(k, _)| k != "login" && k != "password");
                form.extend([pair("login", &user.provider_login), pair("password", "any")]);
            } else if provider && value("prompt") == Some("consent") {
                consents.push(Consent {
                    at: "oidc-provider",
                    scopes: texts_between(&page.body, "<li>", "</li>"),
                });
            } else if value("new_password").is_some() {
                form.extend([
                    pair("new_password", &user.new_password),
                    pair("confirm", &user.new_password),
                ]);
            } else if value("username").is_some() && value("password").is_some() {
                let password = match password_tries {
                    0 => &user.password,
                    1 => &user.new_password,
                    _ => return Err(format!("sign-in as {} refused twice", user.username)),
                };
                password_tries += 1;
                form.retain(|(k, _)| k != "username" && k != "password");
                form.extend([pair("username", &user.username), pair("password", password)]);
            } else if page.body.contains("data-step=\"connect\"") {
                // mcpgate's connect page (an account at a `user_oauth` upstream):
                // the user continues to the service.
            } else if let Some(step) = page.consent_step() {
                // The consent page, or (not counted as consent) the click a
                // public client's loopback redirect needs with consent on record.
                if step == "consent" {
                    consents.push(Consent {
                        at: "mcpgate",
                        scopes: texts_between(&page.body, "<code class=\"scope\">", "</code>"),
                    });
                }
                form.push(pair("decision", "approve"));
            } else {
                return Err(format!("an unknown page at {here}: {}", short(&page)));
            }
            page = self
                .try_post_form(action.as_str(), &form)
                .await
                .map_err(|e| e.to_string())?;
            here = action;
        }
        Err(format!("more than 16 steps from {url}"))
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    pub fn clear_cookies(&mut self) {
        self.cookies.clear();
    }

    /// Forgets one cookie (for example the AS session, keeping another site's).
    pub fn remove_cookie(&mut self, name: &str) {
        self.cookies.remove(name);
    }

    /// Sets a cookie as if a server had (for replaying a captured value).
    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_string(), value.to_string());
    }

    /// Opens an authorization URL; if sent to the login page, signs in as
    /// `username` with [`PASSWORD`] and follows back. Returns the page that
    /// follows sign-in (consent page, or the redirect to the client).
    pub async fn authorize_as(
        &mut self,
        issuer: &str,
        authorize_url: &str,
        username: &str,
    ) -> Page {
        let page = self.get(authorize_url).await;
        let Some(loc) = page.location.clone().filter(|l| l.starts_with("/login")) else {
            return page;
        };
        let login = self.get(&format!("{issuer}{loc}")).await;
        let form = vec![
            ("csrf".to_string(), login.input("csrf").expect("login csrf")),
            (
                "return_to".to_string(),
                login.input("return_to").unwrap_or_default(),
            ),
            ("username".to_string(), username.to_string()),
            ("password".to_string(), PASSWORD.to_string()),
        ];
        let after = self.post_form(&format!("{issuer}/login"), &form).await;
        match after.location.clone() {
            Some(back) if after.status == 303 => self.get(&format!("{issuer}{back}")).await,
            _ => after,
        }
    }

    /// Submits the consent form on `page` with `decision` ("approve"/"deny").
    pub async fn decide(&mut self, issuer: &str, page: &Page, decision: &str) -> Page {
        let mut form = page.hidden_inputs();
        form.push(("decision".into(), decision.into()));
        self.post_form(&format!("{issuer}/consent"), &form).await
    }

    /// What a user who trusts the application does: approves the consent
    /// form on `page` if there is one (the consent page, or the click a
    /// public client's loopback redirect needs even with consent on record),
    /// and returns what follows; any other page is returned as it is.
    pub async fn approve_if_asked(&mut self, issuer: &str, page: Page) -> Page {
        if page.consent_step().is_some() {
            self.decide(issuer, &page, "approve").await
        } else {
            page
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Page, html_unescape};

    fn page(body: &str) -> Page {
        Page {
            status: 200,
            location: None,
            headers: reqwest::header::HeaderMap::new(),
            body: body.into(),
        }
    }

    #[test]
    fn reads_inputs_whatever_the_attribute_order() {
        let p = page(
            r#"<form method="post" action="/interaction/a&amp;b/login">
            <input type="hidden" name="prompt" value="login"/>
            <input required data-name="decoy" name="login" placeholder="x">
            <input value="s&#38;t" name="csrf" type="hidden">
            <input type="submit" value="go"></form>"#,
        );
        let got: Vec<_> = p
            .inputs()
            .into_iter()
            .map(|i| (i.name, i.value, i.kind))
            .collect();
        let own = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(
            got,
            [
                own("prompt", "login", "hidden"),
                own("login", "", "text"),
                own("csrf", "s&t", "hidden"),
            ]
        );
        assert_eq!(
            p.hidden_inputs(),
            [
                ("prompt".to_string(), "login".to_string()),
                ("csrf".to_string(), "s&t".to_string())
            ]
        );
        assert_eq!(p.form_action().as_deref(), Some("/interaction/a&b/login"));
        assert_eq!(page("<p>no form</p>").form_action(), None);
    }

    #[test]
    fn unescapes_named_and_numeric_references() {
        assert_eq!(
            html_unescape("/a?b=1&#38;c=2&amp;d=&#x2f;&#39;&quot;&lt;&gt;"),
            "/a?b=1&c=2&d=/'\"<>"
        );
        assert_eq!(
            html_unescape("a & b &bogus; &#xZZ; &"),
            "a & b &bogus; &#xZZ; &"
        );
    }
}
