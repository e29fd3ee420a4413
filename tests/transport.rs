//! The SOAP transport against wiremock: headers, cookie, version negotiation, faults on 200 and 500,
//! body and depth caps, timeouts, and what a recording keeps.

#[path = "support/run.rs"]
pub mod run;
#[path = "support/sim.rs"]
pub mod sim;

use std::time::Duration;

use secrecy::SecretString;
use vmha::client::{ConnectOptions, Credentials, Session, VimError};
use vmha::soap::tls::TlsPolicy;
use vmha::soap::{FaultKind, SoapClient, SoapError, TransportOptions};
use wiremock::matchers::{body_string_contains, header, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn envelope(body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"#
    )
}

const SERVICE_CONTENT: &str = r#"<RetrieveServiceContentResponse xmlns="urn:vim25"><returnval><rootFolder type="Folder">group-d1</rootFolder><propertyCollector type="PropertyCollector">propertyCollector</propertyCollector><about><name>VMware vCenter Server</name><fullName>VMware vCenter Server 9.1.0 build-1</fullName><vendor>VMware, Inc.</vendor><version>9.1.0</version><build>1</build><apiType>VirtualCenter</apiType><apiVersion>9.1.0.0</apiVersion><instanceUuid>u-1</instanceUuid><someFutureField>x</someFutureField></about><sessionManager type="SessionManager">SessionManager-42</sessionManager><searchIndex type="SearchIndex">SearchIndex</searchIndex></returnval></RetrieveServiceContentResponse>"#;

fn fault(name: &str, msg: &str) -> String {
    envelope(&format!(
        r#"<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>{msg}</faultstring><detail><{name}Fault xmlns="urn:vim25" xsi:type="{name}"></{name}Fault></detail></soapenv:Fault>"#
    ))
}

fn opts(server: &MockServer, secs: u64) -> TransportOptions {
    TransportOptions::new(
        &format!("{}/sdk", server.uri()),
        TlsPolicy::Insecure,
        Duration::from_secs(secs),
    )
}

async fn mount_connect(server: &MockServer) {
    Mock::given(method("POST"))
        .and(body_string_contains("<RetrieveServiceContent"))
        .and(header("SOAPAction", "\"urn:vim25/4.1\""))
        .respond_with(ResponseTemplate::new(200).set_body_string(envelope(SERVICE_CONTENT)))
        .mount(server)
        .await;
    // Login goes to the SessionManager the server named, at the capped version.
    Mock::given(method("POST"))
        .and(body_string_contains(r#"<_this type="SessionManager">SessionManager-42</_this>"#))
        .and(body_string_contains("<Login"))
        .and(header("SOAPAction", "\"urn:vim25/8.0.3.0\""))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Set-Cookie", "vmware_soap_session=\"abc123\"; Path=/; HttpOnly; Secure")
                .set_body_string(envelope(r#"<LoginResponse xmlns="urn:vim25"><returnval><key>k-secret</key><userName>u</userName></returnval></LoginResponse>"#)),
        )
        .mount(server)
        .await;
}

#[tokio::test]
async fn session_uses_named_manager_capped_version_and_cookie_then_logs_out() {
    let server = MockServer::start().await;
    mount_connect(&server).await;
    Mock::given(method("POST"))
        .and(body_string_contains("<Logout"))
        .and(header("Cookie", "vmware_soap_session=\"abc123\""))
        .respond_with(ResponseTemplate::new(200).set_body_string(envelope(r#"<LogoutResponse xmlns="urn:vim25"/>"#)))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let session = Session::connect(ConnectOptions {
        transport: opts(&server, 5),
        credentials: Credentials {
            user: "u".into(),
            password: SecretString::from("hunter2-pw"),
        },
        record: Some((dir.path().to_path_buf(), "unit".into())),
        cache: None,
    })
    .await
    .unwrap();
    assert_eq!(session.api_version(), "8.0.3.0");
    assert!(!format!("{session:?}").contains("hunter2"), "Debug shows the password");
    session.logout().await;
    session.logout().await; // twice is harmless: one Logout was sent
    let mut all = String::new();
    for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
        all.push_str(&std::fs::read_to_string(f.path()).unwrap());
    }
    assert!(all.contains("method: Login") && all.contains("method: Logout"));
    assert!(
        !all.contains("hunter2-pw") && !all.contains("k-secret") && !all.contains("abc123"),
        "{all}"
    );
}

#[tokio::test]
async fn refused_login_is_login_refused() {
    let server = MockServer::start().await;
    Mock::given(body_string_contains("<RetrieveServiceContent"))
        .respond_with(ResponseTemplate::new(200).set_body_string(envelope(SERVICE_CONTENT)))
        .mount(&server)
        .await;
    Mock::given(body_string_contains("<Login"))
        .respond_with(ResponseTemplate::new(500).set_body_string(fault("InvalidLogin", "Cannot complete login")))
        .mount(&server)
        .await;
    let err = Session::connect(ConnectOptions {
        transport: opts(&server, 5),
        credentials: Credentials {
            user: "u".into(),
            password: SecretString::from("wrong-pw"),
        },
        record: None,
        cache: None,
    })
    .await
    .unwrap_err();
    assert!(matches!(err, VimError::LoginRefused { .. }), "{err:?}");
    assert!(!err.to_string().contains("wrong-pw"));
}

#[tokio::test]
async fn faults_on_200_and_500_keep_their_type() {
    let server = MockServer::start().await;
    Mock::given(body_string_contains("<PowerOnVM_Task"))
        .respond_with(ResponseTemplate::new(500).set_body_string(fault("InvalidPowerState", "already on")))
        .mount(&server)
        .await;
    Mock::given(body_string_contains("<ShutdownGuest"))
        .respond_with(ResponseTemplate::new(200).set_body_string(fault("ToolsUnavailable", "no tools")))
        .mount(&server)
        .await;
    Mock::given(body_string_contains("<AnswerVM"))
        .respond_with(ResponseTemplate::new(500).set_body_string(fault("VmFaultToleranceIssue", "odd")))
        .mount(&server)
        .await;
    let c = SoapClient::new(opts(&server, 5), None).unwrap();
    let vm = vmha::vim::MoRef::new("VirtualMachine", "vm-1");
    let e = vmha::vim::methods::power_on_vm_task(&c, &vm, None).await.unwrap_err();
    assert_eq!(e.fault().unwrap().kind, FaultKind::InvalidPowerState);
    let e = vmha::vim::methods::shutdown_guest(&c, &vm).await.unwrap_err();
    assert_eq!(e.fault().unwrap().kind, FaultKind::ToolsUnavailable);
    let e = vmha::vim::methods::answer_vm(&c, &vm, "_vmx1", "1").await.unwrap_err();
    assert_eq!(
        e.fault().unwrap().kind,
        FaultKind::Other("VmFaultToleranceIssue".into())
    );
}

#[tokio::test]
async fn oversized_deep_and_slow_responses_are_errors() {
    let server = MockServer::start().await;
    let big = envelope(&format!("<X>{}</X>", "a".repeat(200_000)));
    Mock::given(body_string_contains("<Big"))
        .respond_with(ResponseTemplate::new(200).set_body_string(big))
        .mount(&server)
        .await;
    let deep = envelope(&format!("{}{}", "<d>".repeat(500), "</d>".repeat(500)));
    Mock::given(body_string_contains("<Deep"))
        .respond_with(ResponseTemplate::new(200).set_body_string(deep))
        .mount(&server)
        .await;
    Mock::given(body_string_contains("<Slow"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(5))
                .set_body_string(envelope("<x/>")),
        )
        .mount(&server)
        .await;
    Mock::given(body_string_contains("<Dtd"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>"#),
        )
        .mount(&server)
        .await;
    let mut o = opts(&server, 1);
    o.max_body = 100_000;
    let c = SoapClient::new(o, None).unwrap();
    assert!(matches!(
        c.call("Big", "").await,
        Err(SoapError::TooLarge { limit: 100_000, .. })
    ));
    assert!(matches!(c.call("Deep", "").await, Err(SoapError::Malformed { .. })));
    assert!(matches!(
        c.call("Slow", "").await,
        Err(SoapError::Timeout { secs: 1, .. })
    ));
    assert!(matches!(c.call("Dtd", "").await, Err(SoapError::Malformed { .. })));
}

#[tokio::test]
async fn non_soap_error_pages_are_http_errors() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_string("<html>Service Unavailable</html>"))
        .mount(&server)
        .await;
    let c = SoapClient::new(opts(&server, 5), None).unwrap();
    match c.call("RetrieveServiceContent", "").await {
        Err(SoapError::Http { status: 503, .. }) => {}
        other => panic!("{other:?}"),
    }
}

/// A one-shot HTTP server on loopback that answers every connection with `answer` and then closes it.
async fn raw_server(answer: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Read the request head (and whatever body came with it), then answer and hang up.
                let mut buf = vec![0u8; 65536];
                let _ = tokio::time::timeout(Duration::from_millis(300), sock.read(&mut buf)).await;
                let _ = sock.write_all(answer).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}/sdk")
}

fn raw_opts(url: &str, tls: TlsPolicy) -> TransportOptions {
    TransportOptions::new(url, tls, Duration::from_secs(5))
}

#[tokio::test]
async fn a_cut_answer_is_connection_lost_not_cannot_connect() {
    let url =
        raw_server(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 5000\r\n\r\n<soapenv:Envelope").await;
    let c = SoapClient::new(raw_opts(&url, TlsPolicy::Insecure), None).unwrap();
    let e = c.call("RetrieveServiceContent", "").await.unwrap_err();
    assert!(matches!(e, SoapError::ConnectionLost { .. }), "{e:?}");
    assert!(e.is_connection_loss());
    let text = e.to_string();
    assert!(
        text.contains("broke before the answer was complete") && !text.contains("cannot connect"),
        "{text}"
    );
}

#[tokio::test]
async fn a_refused_port_is_connect_with_its_cause() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}/sdk");
    let c = SoapClient::new(raw_opts(&url, TlsPolicy::Insecure), None).unwrap();
    let e = c.call("RetrieveServiceContent", "").await.unwrap_err();
    assert!(matches!(e, SoapError::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains("connection refused"), "{e}");
    // The cause stays typed: the io::Error is the source.
    let src = std::error::Error::source(&e).expect("a source");
    assert_eq!(
        src.downcast_ref::<std::io::Error>().map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
}

#[tokio::test]
async fn plain_http_answered_over_tls_says_so() {
    let server = MockServer::start().await;
    let url = format!("{}/sdk", server.uri().replace("http://", "https://"));
    let c = SoapClient::new(raw_opts(&url, TlsPolicy::Insecure), None).unwrap();
    let e = c.call("RetrieveServiceContent", "").await.unwrap_err();
    match &e {
        SoapError::Tls {
            reason: vmha::soap::client::TlsFailure::PlainHttp,
            source,
            ..
        } => assert!(matches!(source, rustls::Error::InvalidMessage(_))),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("plain HTTP"), "{e}");
}

#[tokio::test]
async fn an_html_page_is_not_an_sdk_endpoint_and_a_redirect_shows_its_location() {
    let server = MockServer::start().await;
    Mock::given(body_string_contains("<RetrieveServiceContent"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Content-Type", "text/html")
                .set_body_string("<!DOCTYPE html><html><body>vSphere Client</body></html>"),
        )
        .mount(&server)
        .await;
    Mock::given(body_string_contains("<Login"))
        .respond_with(ResponseTemplate::new(302).insert_header("Location", "https://vc.example/ui/"))
        .mount(&server)
        .await;
    let c = SoapClient::new(opts(&server, 5), None).unwrap();
    let e = c.call("RetrieveServiceContent", "").await.unwrap_err();
    assert!(matches!(e, SoapError::NotSdk { status: 200, .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("not a vSphere SDK endpoint") && text.contains("URL path"),
        "{text}"
    );
    assert!(!text.contains("document type"), "{text}");
    let e = c.call("Login", "").await.unwrap_err();
    assert!(matches!(e, SoapError::Redirect { status: 302, .. }), "{e:?}");
    assert!(e.to_string().contains("https://vc.example/ui/"), "{e}");
}

#[tokio::test]
async fn a_connect_that_gives_up_names_the_connect_timeout() {
    // A listener that accepts and never speaks: the TLS handshake stalls inside the connect phase.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/sdk", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let mut o = raw_opts(&url, TlsPolicy::Insecure);
    o.connect_timeout = Duration::from_secs(1);
    let c = SoapClient::new(o, None).unwrap();
    let started = std::time::Instant::now();
    let e = c.call("RetrieveServiceContent", "").await.unwrap_err();
    // One connect timeout (the versions file's request reports it), never the 5 s request timeout.
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    // It was connected: the message says that no answer came, not that there was no connection.
    assert!(
        matches!(
            e,
            SoapError::ConnectTimeout {
                secs: 1,
                stage: vmha::soap::client::ConnectStage::TlsHandshake,
                ..
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("connected to") && text.contains("no answer came to the TLS handshake within 1 s"),
        "{text}"
    );
    assert!(!text.contains("no connection"), "{text}");
    assert!(!e.to_string().contains("within 5 s"), "{e}");
    hold.abort();
}

/// Runs the vmha binary with a clean `VMHA_*` environment; returns (exit code, stderr).
fn vmha_cli(args: &[&str]) -> (i32, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vmha"));
    for (k, _) in std::env::vars() {
        if k.starts_with("VMHA_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .env("VMHA_PASSWORD", "pw-not-used")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run vmha");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn configuration_errors_exit_2_before_connecting() {
    // A listener that counts connections: none of these may reach it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("https://127.0.0.1:{}/sdk", listener.local_addr().unwrap().port());
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let not_pem = not_pem.display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--url", "https://127.0.0.1:99999/sdk", "--user", "u", "check"],
            "not a TCP port",
        ),
        (
            vec!["--url", &url, "--user", "u", "--ca-file", &not_pem, "check"],
            "no PEM certificate",
        ),
        (
            vec![
                "--url",
                &url,
                "--user",
                "u",
                "--insecure",
                "status",
                "--uuid",
                "------------------------------------",
            ],
            "0 hex digits",
        ),
        (
            vec![
                "--url",
                &url,
                "--user",
                "u",
                "--insecure",
                "monitor",
                "--host",
                "h",
                "--uuid",
                "4210abcd-ef01-2345-6789-abcdef01234",
            ],
            "31 hex digits",
        ),
        (
            vec!["--url", &url, "--user", "u", "--request-timeout", "-5", "check"],
            "is negative",
        ),
    ];
    for (args, want) in cases {
        let (code, stderr) = vmha_cli(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("builder error") && !stderr.contains("unexpected argument"),
            "{stderr}"
        );
    }
    assert!(
        listener.accept().is_err(),
        "a configuration error connected to the server"
    );
}

#[tokio::test]
async fn a_server_quoting_the_password_back_leaks_it_nowhere() {
    const PW: &str = "Quoted&Secret-42";
    const PW_XML: &str = "Quoted&amp;Secret-42";
    let server = MockServer::start().await;
    Mock::given(body_string_contains("<RetrieveServiceContent"))
        .respond_with(ResponseTemplate::new(200).set_body_string(envelope(SERVICE_CONTENT)))
        .mount(&server)
        .await;
    // The server quotes the request it got, in both the raw and the escaped form.
    Mock::given(body_string_contains("<Login"))
        .respond_with(ResponseTemplate::new(500).set_body_string(fault(
            "InvalidRequest",
            &format!("cannot parse request: &lt;password&gt;{PW_XML}&lt;/password&gt; ({PW_XML})"),
        )))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/sdk", server.uri());
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vmha"));
            for (k, _) in std::env::vars() {
                if k.starts_with("VMHA_") {
                    cmd.env_remove(k);
                }
            }
            cmd.env("VMHA_PASSWORD", PW)
                .args(["-vv", "--url", &url, "--user", "u", "--record"])
                .arg(&dir)
                .arg("check")
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("cannot parse request") && stderr.contains("(redacted)"),
        "{stderr}"
    );
    let mut recorded = String::new();
    for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
        recorded.push_str(&std::fs::read_to_string(f.path()).unwrap());
    }
    assert!(
        recorded.contains("method: Login") && recorded.contains("cannot parse request"),
        "{recorded}"
    );
    for text in [&*stdout, &*stderr, &recorded] {
        assert!(
            !text.contains("Quoted&") && !text.contains("Secret-42"),
            "password leaked: {text}"
        );
    }

    // The same through the library: an HTTP error page quoting it, and a fault quoting it.
    let server = MockServer::start().await;
    Mock::given(body_string_contains("<Login"))
        .respond_with(ResponseTemplate::new(400).set_body_string(format!("bad request: {PW}")))
        .mount(&server)
        .await;
    Mock::given(body_string_contains("<Other"))
        .respond_with(ResponseTemplate::new(200).set_body_string(fault("InvalidArgument", PW_XML)))
        .mount(&server)
        .await;
    let c = SoapClient::new(opts(&server, 5), None).unwrap();
    let e = c
        .call("Login", &format!("<password>{PW_XML}</password>"))
        .await
        .unwrap_err();
    assert!(matches!(e, SoapError::Http { status: 400, .. }), "{e:?}");
    assert!(
        !e.to_string().contains("Secret-42") && !format!("{e:?}").contains("Secret-42"),
        "{e}"
    );
    let e = c.call("Other", "").await.unwrap_err();
    let f = e.fault().unwrap();
    assert!(
        !f.message.contains("Secret-42") && f.message.contains("(redacted)"),
        "{f:?}"
    );
}

#[tokio::test]
async fn warnings_on_a_non_terminal_stderr_carry_no_colour_codes() {
    let server = MockServer::start().await;
    mount_connect_any_version(&server).await;
    let url = format!("{}/sdk", server.uri());
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vmha"));
        for (k, _) in std::env::vars() {
            if k.starts_with("VMHA_") {
                cmd.env_remove(k);
            }
        }
        // stderr is a pipe here, as it is a file under a cluster manager; -vv makes vmha log at every level.
        cmd.env("VMHA_PASSWORD", "pw")
            .env_remove("NO_COLOR")
            .args(["-vv", "--url", &url, "--user", "u", "check"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DEBUG"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "ANSI codes in {stderr:?}");
}

/// RetrieveServiceContent and Login at whatever version, and Logout.
async fn mount_connect_any_version(server: &MockServer) {
    Mock::given(body_string_contains("<RetrieveServiceContent"))
        .respond_with(ResponseTemplate::new(200).set_body_string(envelope(SERVICE_CONTENT)))
        .mount(server)
        .await;
    Mock::given(body_string_contains("<Login"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Set-Cookie", "vmware_soap_session=\"abc123\"; Path=/")
                .set_body_string(envelope(r#"<LoginResponse xmlns="urn:vim25"><returnval><key>k</key><userName>u</userName></returnval></LoginResponse>"#)),
        )
        .mount(server)
        .await;
    Mock::given(body_string_contains("<Logout"))
        .respond_with(ResponseTemplate::new(200).set_body_string(envelope(r#"<LogoutResponse xmlns="urn:vim25"/>"#)))
        .mount(server)
        .await;
}

#[tokio::test]
async fn the_versions_file_sets_the_first_requests_version_once() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path("/sdk/vimServiceVersions.xml"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"<?xml version="1.0" encoding="UTF-8"?><namespaces version="1.0"><namespace><name>urn:vim25</name><version>7.0.3.0</version><priorVersions><version>6.7</version><version>6.5</version></priorVersions></namespace></namespaces>"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(body_string_contains("<RetrieveServiceContent"))
        .and(header("SOAPAction", "\"urn:vim25/7.0.3.0\""))
        .respond_with(ResponseTemplate::new(200).set_body_string(envelope(SERVICE_CONTENT)))
        .expect(2)
        .mount(&server)
        .await;
    let c = SoapClient::new(opts(&server, 5), None).unwrap();
    c.call("RetrieveServiceContent", "").await.unwrap();
    assert_eq!(c.version(), "7.0.3.0");
    c.call("RetrieveServiceContent", "").await.unwrap();
    server.verify().await;
}

#[tokio::test]
async fn a_missing_or_unreadable_versions_file_keeps_the_baseline() {
    for answer in [
        ResponseTemplate::new(404).set_body_string("<html>Not Found</html>"),
        ResponseTemplate::new(200).set_body_string("<!DOCTYPE html><html>portal</html>"),
        ResponseTemplate::new(200).set_body_string(
            "<namespaces><namespace><name>urn:other</name><version>9.0</version></namespace></namespaces>",
        ),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(answer)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(body_string_contains("<RetrieveServiceContent"))
            .and(header("SOAPAction", "\"urn:vim25/4.1\""))
            .respond_with(ResponseTemplate::new(200).set_body_string(envelope(SERVICE_CONTENT)))
            .expect(1)
            .mount(&server)
            .await;
        let c = SoapClient::new(opts(&server, 5), None).unwrap();
        c.call("RetrieveServiceContent", "").await.unwrap();
        assert_eq!(c.version(), "4.1");
        server.verify().await;
    }
}

/// The simulator started with one `--tls` profile (ESX mode); stops when dropped (its stdin closes).
struct TlsSim {
    url: String,
    user: String,
    password: String,
    thumbprint: String,
    ca_file: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl TlsSim {
    fn start(profile: &str) -> TlsSim {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let mut child = std::process::Command::new(sim::binary())
            .args(["--mode", "esx", "--tls", profile, "--ca-out"])
            .arg(&ca)
            .env("TMPDIR", dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the simulator");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: serde_json::Value =
            serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("simulator --tls {profile}: {e}: {line:?}"));
        let field = |k: &str| ready[k].as_str().unwrap_or_else(|| panic!("{k} in {line}")).to_string();
        TlsSim {
            url: field("url"),
            user: field("user"),
            password: field("password"),
            thumbprint: field("thumbprint"),
            ca_file: field("ca_file"),
            child,
            _dir: dir,
        }
    }

    /// `vmha check` with these trust flags: (exit code, stderr).
    fn check(&self, trust: &[&str]) -> (i32, String) {
        self.check_at(&self.url, trust)
    }

    /// `vmha check` at another address of the same server.
    fn check_at(&self, url: &str, trust: &[&str]) -> (i32, String) {
        let mut flags: Vec<String> = vec!["--request-timeout".into(), "10".into()];
        flags.extend(trust.iter().map(|t| t.to_string()));
        let r = run::Vmha {
            bin: env!("CARGO_BIN_EXE_vmha").into(),
            url: url.to_string(),
            user: self.user.clone(),
            password: Some(self.password.clone()),
            flags,
            stdin: None,
        }
        .run(&["check"]);
        (r.code, r.stderr)
    }
}

impl Drop for TlsSim {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[test]
fn a_self_signed_ca_certificate_in_ca_file_is_trusted_with_its_name_checked() {
    let sim = TlsSim::start("self-signed-ca");
    let (code, stderr) = sim.check(&["--ca-file", &sim.ca_file]);
    assert_eq!(code, 0, "{stderr}");
    // By the name the certificate holds, too.
    let (code, stderr) = sim.check_at(&sim.url.replace("127.0.0.1", "localhost"), &["--ca-file", &sim.ca_file]);
    assert_eq!(code, 0, "{stderr}");
    // Without --ca-file the same server is untrusted.
    let (code, stderr) = sim.check(&[]);
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("not trusted") && stderr.contains("--ca-file"),
        "{stderr}"
    );
}

#[test]
fn an_rsa_1024_server_connects_pinned_or_insecure_and_is_explained_otherwise() {
    let sim = TlsSim::start("rsa1024");
    let (code, stderr) = sim.check(&["--insecure"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = sim.check(&["--thumbprint", &sim.thumbprint]);
    assert_eq!(code, 0, "{stderr}");
    // Trusting it as a CA cannot work (ring will not verify its handshake): say why, and how to pin it.
    for trust in [vec!["--ca-file", &sim.ca_file], vec![]] {
        let (code, stderr) = sim.check(&trust);
        assert_eq!(code, 4, "{stderr}");
        assert!(stderr.contains("1024-bit RSA key, too weak"), "{stderr}");
        assert!(
            stderr.contains(&sim.thumbprint) && stderr.contains("--thumbprint"),
            "{stderr}"
        );
    }
    // A wrong pin is a pin mismatch that shows the server's SHA-256.
    let mut wrong = sim.thumbprint.clone();
    wrong.replace_range(0..2, if wrong.starts_with("00") { "11" } else { "00" });
    let (code, stderr) = sim.check(&["--thumbprint", &wrong]);
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("differs from the pinned one") && stderr.contains(&sim.thumbprint),
        "{stderr}"
    );
}

#[test]
fn a_tls_1_0_only_server_is_named_as_such() {
    let sim = TlsSim::start("tls10");
    let (code, stderr) = sim.check(&["--insecure"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("only TLS 1.0/1.1") && stderr.contains("TLS 1.2"),
        "{stderr}"
    );
}

#[test]
fn an_expired_certificate_shows_dates() {
    let sim = TlsSim::start("expired");
    let (code, stderr) = sim.check(&["--ca-file", &sim.ca_file]);
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("expired on 20") && stderr.contains(" UTC (now 20"),
        "{stderr}"
    );
}

/// A TCP relay on loopback in front of `upstream` (`host:port`) that counts the connections it accepts.
fn counting_relay(upstream: String) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                continue;
            };
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut c1, mut s1) = (client, server);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c1, &mut s1);
                let _ = s1.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (addr.to_string(), count)
}

#[test]
fn a_one_shot_status_uses_one_connection() {
    let sim = TlsSim::start("ca-signed");
    let upstream = sim
        .url
        .trim_start_matches("https://")
        .trim_end_matches("/sdk")
        .to_string();
    let (relay, count) = counting_relay(upstream.clone());
    let url = sim.url.replace(&upstream, &relay);
    for args in [
        vec!["check"],
        vec!["status", "--name", "ha-host-vm-0"],
        vec!["status", "--name", "nonexistent"],
    ] {
        count.store(0, std::sync::atomic::Ordering::SeqCst);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vmha"));
        for (k, _) in std::env::vars() {
            if k.starts_with("VMHA_") {
                cmd.env_remove(k);
            }
        }
        let out = cmd
            .env("VMHA_PASSWORD", &sim.password)
            .args(["--url", &url, "--user", &sim.user, "--ca-file", &sim.ca_file])
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(matches!(out.status.code(), Some(0 | 2 | 10 | 1)), "{args:?}: {stderr}");
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1, "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn a_login_cut_after_its_cookie_still_leaves_the_cookie_to_log_out_with() {
    let url = raw_server(
        b"HTTP/1.1 200 OK\r\nSet-Cookie: vmware_soap_session=\"cut-1\"; Path=/\r\nContent-Type: text/xml\r\nContent-Length: 4000\r\n\r\n<soapenv:Envelope",
    )
    .await;
    let c = SoapClient::new(raw_opts(&url, TlsPolicy::Insecure), None).unwrap();
    let e = c.call("Login", "<password>pw-cut</password>").await.unwrap_err();
    assert!(matches!(e, SoapError::ConnectionLost { .. }), "{e:?}");
    assert!(c.has_session_cookie());
    assert!(!format!("{c:?}").contains("cut-1"));
}
