//! Replays `--record` exchanges through wiremock: no network, no simulator.
//!
//! Each exchange is mounted once, in recorded order, and matched on the SOAP method plus the request's key
//! elements: every leaf element's name and text, except the password (redacted in recordings) and
//! `maxWaitSeconds` (it depends on how much of a wait was left when the request went out). Each must be
//! asked for exactly once (`MockServer::verify`), and a request that is in no recording is an error too.

use std::path::Path;

use vmha::soap::client::VERSIONS_FILE;
use vmha::soap::record::parse_exchange;
use vmha::soap::xml::parse;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// The method name and the key leaves of a SOAP request body.
pub fn request_key(body: &str) -> Option<(String, Vec<(String, String)>)> {
    let root = parse(body, 256).ok()?;
    let method = root.child("Body")?.children.first()?;
    let mut leaves = Vec::new();
    fn walk(el: &vmha::soap::Element, path: &str, out: &mut Vec<(String, String)>) {
        let p = format!("{path}/{}", el.name);
        if el.children.is_empty() {
            if el.name != "password" && el.name != "maxWaitSeconds" {
                out.push((p, el.text.clone()));
            }
        } else {
            for c in &el.children {
                walk(c, &p, out);
            }
        }
    }
    for c in &method.children {
        walk(c, "", &mut leaves);
    }
    Some((method.name.clone(), leaves))
}

/// Matches the method and, unless built with `method_only`, the key leaves.
struct KeyMatcher(String, Option<Vec<(String, String)>>);

impl KeyMatcher {
    fn method_only(method: &str) -> KeyMatcher {
        KeyMatcher(method.to_string(), None)
    }
}

impl wiremock::Match for KeyMatcher {
    fn matches(&self, req: &Request) -> bool {
        let body = String::from_utf8_lossy(&req.body);
        request_key(&body).is_some_and(|(m, leaves)| m == self.0 && self.1.as_ref().is_none_or(|l| *l == leaves))
    }
}

/// Starts a mock server holding every exchange of `dir`, in order, each expected exactly once. Returns it
/// and the recorded SOAP methods, in order.
pub async fn mount_recording(dir: &Path) -> (MockServer, Vec<String>) {
    let server = MockServer::start().await;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("recording {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "recording {} is empty", dir.display());
    let mut methods = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let text = std::fs::read_to_string(f).unwrap();
        let ex = parse_exchange(&text).unwrap_or_else(|| panic!("{} is not a vmha recording", f.display()));
        // The versions file vmha reads before its first call is a plain GET, not a SOAP call.
        if ex.method == VERSIONS_FILE {
            let path = ex.request.strip_prefix("GET ").unwrap_or(&ex.request).to_string();
            Mock::given(wiremock::matchers::method("GET"))
                .and(wiremock::matchers::path(path))
                .respond_with(ResponseTemplate::new(ex.status).set_body_raw(ex.response.clone(), "text/xml"))
                .up_to_n_times(1)
                .expect(1)
                .named(f.file_name().unwrap().to_string_lossy().to_string())
                .mount(&server)
                .await;
            methods.push(ex.method.clone());
            continue;
        }
        let (method, leaves) =
            request_key(&ex.request).unwrap_or_else(|| panic!("{}: request is not a SOAP call", f.display()));
        assert_eq!(method, ex.method, "{}", f.display());
        let mut resp = ResponseTemplate::new(ex.status).set_body_raw(ex.response.clone(), "text/xml; charset=utf-8");
        // A wait that timed out with no change took maxWaitSeconds on the server: take as long here, so
        // the command's own deadlines fall where they fell when it was recorded.
        if method == "WaitForUpdatesEx" && !ex.response.contains("<returnval") {
            let secs = leaves_max_wait(&ex.request);
            resp = resp.set_delay(std::time::Duration::from_secs(secs));
        }
        if method == "Login" {
            resp = resp.insert_header(
                "Set-Cookie",
                "vmware_soap_session=\"replayed-session\"; Path=/; HttpOnly",
            );
        }
        methods.push(method.clone());
        Mock::given(wiremock::matchers::method("POST"))
            .and(KeyMatcher(method, Some(leaves)))
            .respond_with(resp)
            .up_to_n_times(1)
            .expect(1)
            .with_priority(u8::try_from(1 + i.min(200)).unwrap())
            .named(f.file_name().unwrap().to_string_lossy().to_string())
            .mount(&server)
            .await;
    }
    // A wait the command abandoned (its own timer fired first) got no answer, so it was not recorded:
    // answer such a wait never, as a server with nothing to report would. It is the one exemption.
    Mock::given(wiremock::matchers::method("POST"))
        .and(KeyMatcher::method_only("WaitForUpdatesEx"))
        .respond_with(ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(600)))
        .with_priority(254)
        .named("an abandoned WaitForUpdatesEx")
        .mount(&server)
        .await;
    // Anything else the recording does not hold (or holds fewer times) fails `verify`.
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(500).set_body_string("not in the recording"))
        .with_priority(255)
        .expect(0)
        .named("a request that is not in the recording")
        .mount(&server)
        .await;
    (server, methods)
}

fn leaves_max_wait(request: &str) -> u64 {
    parse(request, 256)
        .ok()
        .and_then(|r| {
            let body = r.child("Body")?.children.first()?.clone();
            body.path(&["options", "maxWaitSeconds"])
                .and_then(|e| e.text.trim().parse().ok())
        })
        .unwrap_or(0)
}
